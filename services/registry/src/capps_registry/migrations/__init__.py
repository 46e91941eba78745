"""Alembic migrations of the registry's tables (version table `alembic_version_registry`)."""
