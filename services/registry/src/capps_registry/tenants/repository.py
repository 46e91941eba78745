"""SQL of tenants."""

from capps_registry.db import Connection


async def insert_tenant(conn: Connection, tenant_id: str, name: str) -> None:
    """Store a new tenant."""
    await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant_id, name)
