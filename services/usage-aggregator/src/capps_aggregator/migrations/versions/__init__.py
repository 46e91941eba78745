"""Revisions of the usage tables, oldest first."""
