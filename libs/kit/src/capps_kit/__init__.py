"""Infrastructure kit shared by every service: settings, logging, metrics, health, clients."""
