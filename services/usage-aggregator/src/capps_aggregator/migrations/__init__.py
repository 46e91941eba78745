"""Alembic history of the usage tables (version table `alembic_version_usage`)."""
