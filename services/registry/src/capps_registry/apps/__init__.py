"""Connected apps of a tenant: create, list, read, reconfigure, delete."""
