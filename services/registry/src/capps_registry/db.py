"""The asyncpg pool and connections the repositories take, and the tenant a transaction acts for.

Tenant-owned tables are behind row-level security (migration 0006): a transaction sees and
writes a tenant's rows only after `set_tenant`, which lasts until it ends (SET LOCAL).
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg

Pool: TypeAlias = asyncpg.Pool
Connection: TypeAlias = asyncpg.Connection
CLIENT_COLUMNS = (
    "id, tenant_id, kind, name, description, enabled, permissions, rate_limit_per_minute, "
    "rate_limit_per_hour, created_at, updated_at, version, tokens_valid_after, issuer"
)
# The setting the policies compare each row's tenant with.
TENANT_SETTING = "capps.tenant_id"


async def set_tenant(conn: Connection, tenant_id: str) -> None:
    """Act for this tenant until the current transaction ends."""
    await conn.execute("SELECT set_config($1, $2, true)", TENANT_SETTING, tenant_id)


@asynccontextmanager
async def tenant_transaction(pool: Pool, tenant_id: str) -> AsyncIterator[Connection]:
    """A connection in a transaction acting for the tenant."""
    async with pool.acquire() as conn, conn.transaction():
        await set_tenant(conn, tenant_id)
        yield conn


@asynccontextmanager
async def tenant_scope(db: Pool | Connection, tenant_id: str) -> AsyncIterator[Connection]:
    """A pool's new transaction acting for the tenant, or the caller's own (acting for it)."""
    if isinstance(db, asyncpg.Pool):
        async with tenant_transaction(db, tenant_id) as conn:
            yield conn
    else:
        # Outside a transaction, the setting would not outlive the statement that made it.
        assert db.is_in_transaction(), "a connection acts for a tenant only in a transaction"
        yield db


async def client_tenants(db: Pool | Connection, client_ids: Sequence[str]) -> dict[str, str]:
    """The tenant of each of these clients that exists, by client id (across tenants).

    The one way the service crosses tenants: a SECURITY DEFINER function that maps exact
    client ids to tenant ids and reveals nothing else.
    """
    rows = await db.fetch(
        "SELECT client_id, tenant_id FROM registry_client_tenants($1::text[])", list(client_ids)
    )
    return {row["client_id"]: row["tenant_id"] for row in rows}


async def rls_bypass_reason(db: Pool | Connection) -> str | None:
    """Why the connected role would not be bound by the tenant policies, or None if it is."""
    row = await db.fetchrow(
        "SELECT current_user AS role, r.rolsuper, r.rolbypassrls, "
        "pg_has_role(current_user, c.relowner, 'MEMBER') AS owner "
        "FROM pg_roles r, pg_class c WHERE r.rolname = current_user "
        "AND c.oid = to_regclass('oauth_clients')"
    )
    if row is None:
        return "the registry's tables are missing (run `registry migrate`)"
    for flag, reason in (
        ("rolsuper", "is a superuser"),
        ("rolbypassrls", "has BYPASSRLS"),
        ("owner", "owns the registry's tables"),
    ):
        if row[flag]:
            return f"role {row['role']} {reason}"
    return None
