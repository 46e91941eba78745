"""SQL of tenants."""

from capps_registry.db import Connection, Pool, tenant_scope


async def insert_tenant(conn: Connection, tenant_id: str, name: str) -> None:
    """Store a new tenant."""
    await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant_id, name)


async def tenant_name(db: Pool | Connection, tenant_id: str) -> str | None:
    """The tenant's name, or None if there is no such tenant."""
    async with tenant_scope(db, tenant_id) as conn:
        name: str | None = await conn.fetchval("SELECT name FROM tenants WHERE id = $1", tenant_id)
    return name
