"""The registry: OAuth 2.0 authorization server and admin API of connected apps."""
