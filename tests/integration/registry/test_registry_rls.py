"""Row-level security, the second layer: every tenant-owned table shows one tenant at a time.

Tenant-owned tables are found, not listed: every table with a tenant_id column or a foreign
key to tenants or oauth_clients, plus tenants itself; the usage aggregator's read model is
the one exception (capps_usage.readers: it writes every tenant's counts, the registry reads
them by app ids it found under these policies). A table a later revision adds is held to the
same rules without touching this file.
"""

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from capps_kit.postgres import asyncpg_dsn
from capps_registry.app import refuse_rls_bypass
from capps_registry.db import (
    TENANT_SETTING,
    client_tenants,
    rls_bypass_reason,
    tenant_transaction,
)
from capps_registry.migrations.roles import LoginRoleError, ensure_login_role
from capps_registry.settings import RegistrySettings
from capps_usage.readers import READ_MODEL_TABLES
from tests.integration.registry.conftest import Running, Tenant, new_tenant, token_for

TENANT_OWNED_SQL = """
SELECT c.relname FROM pg_class c
WHERE c.relkind IN ('r', 'p') AND c.relnamespace = 'public'::regnamespace
  AND (c.relname = 'tenants'
       OR EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'tenant_id' AND NOT a.attisdropped)
       OR EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f'
                  AND k.confrelid IN ('tenants'::regclass, 'oauth_clients'::regclass)))
ORDER BY 1
"""


async def tenant_owned(conn: asyncpg.Connection) -> list[str]:
    """The tenant-owned tables of the database, found from the catalog."""
    rows = await conn.fetch(TENANT_OWNED_SQL)
    return [row["relname"] for row in rows if row["relname"] not in READ_MODEL_TABLES]


@pytest.fixture
async def owner(registry: Running) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the tables' owner (who migrates)."""
    conn = await asyncpg.connect(asyncpg_dsn(registry.owner_url))
    yield conn
    await conn.close()


async def tenant_with_app(registry: Running) -> tuple[Tenant, str]:
    """A fresh tenant with one app (a client, secrets, audit rows), made through the API."""
    tenant = await new_tenant(registry)
    token = await token_for(registry, tenant.client_id, tenant.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as admin:
        made = await admin.post("/v1/apps", json={"name": "Isolated", "permissions": []})
    assert made.status_code == 201, made.text
    return tenant, made.json()["id"]


async def assert_refused_to_add_a_client(conn: asyncpg.Connection, tenant_id: str) -> None:
    """A client row for `tenant_id` is refused by the policy's WITH CHECK."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await conn.execute(
            "INSERT INTO oauth_clients (id, tenant_id, kind, name) "
            "VALUES ($1, $2, 'app', 'planted')",
            str(uuid.uuid4()),
            tenant_id,
        )


async def test_every_tenant_owned_table_forces_a_tenant_policy(owner: asyncpg.Connection) -> None:
    tables = await tenant_owned(owner)
    assert {"tenants", "oauth_clients", "client_secrets", "audit_events"} <= set(tables)
    for table in tables:
        enabled, forced = await owner.fetchrow(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass",
            table,
        )
        assert enabled, f"{table}: row-level security is off"
        assert forced, f"{table}: row-level security does not bind its owner (no FORCE)"
        policies = await owner.fetch(
            "SELECT policyname, cmd, roles::text[] AS roles, qual, with_check FROM pg_policies "
            "WHERE schemaname = 'public' AND tablename = $1",
            table,
        )
        isolating = [
            p
            for p in policies
            if p["cmd"] == "ALL"
            and p["roles"] == ["public"]
            and TENANT_SETTING in (p["qual"] or "")
            and TENANT_SETTING in (p["with_check"] or "")
        ]
        assert isolating, f"{table} has no policy on the tenant setting for every role"


async def test_without_the_tenant_setting_nothing_is_seen_or_written(
    registry: Running, owner: asyncpg.Connection
) -> None:
    tenant, app_id = await tenant_with_app(registry)
    tables = await tenant_owned(owner)
    async with registry.state.pool.acquire() as conn:
        for who in (conn, owner):
            for table in tables:
                count = await who.fetchval(f"SELECT count(*) FROM {table}")
                assert count == 0, f"{table} shows {count} rows to a query acting for no tenant"
            await assert_refused_to_add_a_client(who, tenant.tenant_id)
    # The rows are there: acting for the tenant shows them.
    async with tenant_transaction(registry.state.pool, tenant.tenant_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM oauth_clients WHERE id = $1", app_id)


async def test_acting_for_one_tenant_shows_none_of_another_even_to_raw_sql(
    registry: Running, owner: asyncpg.Connection
) -> None:
    tenant_a, app_a = await tenant_with_app(registry)
    tenant_b, app_b = await tenant_with_app(registry)
    clients = {tenant_a.client_id, app_a, tenant_b.client_id, app_b}
    async with tenant_transaction(registry.state.pool, tenant_a.tenant_id) as conn:
        # No WHERE clause: only the policy stands between tenant A and tenant B's rows.
        assert {r["id"] for r in await conn.fetch("SELECT id FROM tenants")} == {tenant_a.tenant_id}
        seen = {r["id"] for r in await conn.fetch("SELECT id FROM oauth_clients")}
        assert seen == {tenant_a.client_id, app_a}
        secret_owners = {
            r["client_id"] for r in await conn.fetch("SELECT client_id FROM client_secrets")
        }
        assert secret_owners == {tenant_a.client_id, app_a}
        audited = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM audit_events")}
        assert audited == {tenant_a.tenant_id}
        for table in await tenant_owned(owner):
            column = "id" if table == "tenants" else "tenant_id"
            if table == "client_secrets":
                continue  # no tenant column: its rows were checked by client above
            leaked = await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE {column} = $1",
                tenant_b.tenant_id,
            )
            assert leaked == 0, f"{table} shows tenant B's rows to tenant A"
        changed = await conn.execute("UPDATE oauth_clients SET name = 'taken' WHERE id = $1", app_b)
        assert changed == "UPDATE 0"
        assert await conn.execute("DELETE FROM client_secrets WHERE client_id = $1", app_b) == (
            "DELETE 0"
        )
        await assert_refused_to_add_a_client(conn, tenant_b.tenant_id)
    # Crossing tenants takes the lookup function, which maps exact client ids and nothing else.
    assert await client_tenants(registry.state.pool, sorted(clients)) == {
        tenant_a.client_id: tenant_a.tenant_id,
        app_a: tenant_a.tenant_id,
        tenant_b.client_id: tenant_b.tenant_id,
        app_b: tenant_b.tenant_id,
    }


async def test_the_setting_ends_with_its_transaction(registry: Running) -> None:
    tenant, app_id = await tenant_with_app(registry)
    async with registry.state.pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT set_config($1, $2, true)", TENANT_SETTING, tenant.tenant_id)
            assert await conn.fetchval("SELECT count(*) FROM oauth_clients WHERE id = $1", app_id)
        # The same pooled connection, the next transaction: the tenant is gone.
        assert await conn.fetchval("SELECT count(*) FROM oauth_clients") == 0


async def test_the_service_role_neither_owns_the_tables_nor_bypasses_the_policies(
    registry: Running, owner: asyncpg.Connection
) -> None:
    role = await registry.state.pool.fetchrow(
        "SELECT current_user AS name, rolsuper, rolbypassrls, rolcreaterole FROM pg_roles "
        "WHERE rolname = current_user"
    )
    assert not role["rolsuper"]
    assert not role["rolbypassrls"]
    assert not role["rolcreaterole"]
    for table in await tenant_owned(owner):
        owned = await registry.state.pool.fetchval(
            "SELECT pg_has_role(current_user, relowner, 'MEMBER') FROM pg_class "
            "WHERE oid = $1::regclass",
            table,
        )
        assert not owned, f"the service's role {role['name']} owns {table}"
    # Nor can it become the role that crosses tenants.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await registry.state.pool.execute("SET ROLE capps_registry_lookup")
    assert await rls_bypass_reason(registry.state.pool) is None
    # The check that stops a production registry from starting as the owner does see it.
    assert "owns the registry's tables" in (await rls_bypass_reason(owner) or "")


async def test_the_login_role_may_not_be_the_owner(
    registry: Running, owner: asyncpg.Connection
) -> None:
    with pytest.raises(LoginRoleError, match="the owner migrations run as"):
        await ensure_login_role(owner, registry.owner_url)


async def test_a_token_of_tenant_a_cannot_reach_tenant_b_through_the_api(
    registry: Running,
) -> None:
    tenant_a, _ = await tenant_with_app(registry)
    _, app_b = await tenant_with_app(registry)
    token = await token_for(registry, tenant_a.client_id, tenant_a.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as admin:
        got: httpx.Response = await admin.get(f"/v1/apps/{app_b}")
    assert got.status_code == 404


async def test_a_production_registry_refuses_to_serve_as_the_owner(
    registry: Running, caplog: pytest.LogCaptureFixture
) -> None:
    owner_pool = await asyncpg.create_pool(asyncpg_dsn(registry.owner_url), min_size=1, max_size=1)
    try:
        # Built without validation: the owner's development password would be refused first.
        production = RegistrySettings.model_construct(environment="production")
        with pytest.raises(RuntimeError, match="owns the registry's tables"):
            await refuse_rls_bypass(owner_pool, production)
        await refuse_rls_bypass(owner_pool, RegistrySettings.model_construct())
        assert "row-level security does not bind the registry" in caplog.text
        # The service's own role passes.
        await refuse_rls_bypass(registry.state.pool, production)
    finally:
        await owner_pool.close()
