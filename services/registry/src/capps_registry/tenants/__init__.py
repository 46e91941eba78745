"""Tenants and their bootstrap admin client."""
