"""Client secrets end to end: rotation, the two-active rule, expiry, revocation, storage."""

import asyncio
import hashlib
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from alembic import command

from capps_kit.postgres import asyncpg_dsn
from capps_registry.db import tenant_transaction
from capps_registry.migrations.runner import alembic_config
from capps_registry.oauth.client_auth import ClientCredentials
from capps_registry.oauth.service import authenticate_client
from tests.integration.registry.conftest import (
    TEST_PEPPER,
    Running,
    Tenant,
    new_tenant,
    tenant_of,
    token_for,
    with_database,
)
from tests.integration.registry.test_registry_admin_api import assert_error

pytestmark = pytest.mark.integration


async def token_status(registry: Running, client_id: str, secret: str) -> int:
    """The status of a token request with these credentials (Basic)."""
    response = await registry.client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return response.status_code


async def new_app(admin: httpx.AsyncClient, name: str = "Rotating") -> dict[str, Any]:
    created = await admin.post("/v1/apps", json={"name": name, "permissions": ["Alert.Read.All"]})
    assert created.status_code == 201, created.text
    app: dict[str, Any] = created.json()
    return app


async def test_rotation_end_to_end(registry: Running, admin: httpx.AsyncClient) -> None:
    app = await new_app(admin)
    first = app["client_secret"]
    assert first.startswith("capps_")

    added = await admin.post(f"/v1/apps/{app['id']}/secrets")
    assert added.status_code == 201, added.text
    assert added.headers["Cache-Control"] == "no-store"
    second = added.json()
    assert set(second) == {
        "id",
        "client_secret",
        "created_at",
        "expires_at",
        "last_used_at",
        "hint",
    }
    assert second["hint"] == second["client_secret"][-4:]

    # Both work while the client moves over; a third is refused with a clear 409.
    assert await token_status(registry, app["id"], first) == 200
    assert await token_status(registry, app["id"], second["client_secret"]) == 200
    third = await admin.post(f"/v1/apps/{app['id']}/secrets", json={})
    assert "2 active secrets" in assert_error(third, 409, "too_many_secrets")["message"]

    detail = (await admin.get(f"/v1/apps/{app['id']}")).json()
    assert len(detail["secrets"]) == 2
    assert first not in json.dumps(detail)
    assert second["client_secret"] not in json.dumps(detail)
    [old] = [secret for secret in detail["secrets"] if secret["id"] != second["id"]]
    assert old["last_used_at"] is not None

    deleted = await admin.delete(f"/v1/apps/{app['id']}/secrets/{old['id']}")
    assert deleted.status_code == 204
    assert await token_status(registry, app["id"], first) == 401
    assert await token_status(registry, app["id"], second["client_secret"]) == 200
    assert_error(await admin.delete(f"/v1/apps/{app['id']}/secrets/{old['id']}"), 404)
    # With one active again, a new one may be added.
    assert (await admin.post(f"/v1/apps/{app['id']}/secrets")).status_code == 201


async def test_an_expired_secret_stops_working_and_frees_its_slot(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = await new_app(admin)
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    added = (await admin.post(f"/v1/apps/{app['id']}/secrets", json={"expires_at": soon})).json()
    assert datetime.fromisoformat(added["expires_at"]) == datetime.fromisoformat(soon)
    assert await token_status(registry, app["id"], added["client_secret"]) == 200
    # Let it expire (the store's clock decides), rather than waiting a day.
    async with tenant_transaction(
        registry.state.pool, await tenant_of(registry, app["id"])
    ) as conn:
        await conn.execute(
            "UPDATE client_secrets SET expires_at = now() - interval '1 second' WHERE id = $1",
            added["id"],
        )
    assert await token_status(registry, app["id"], added["client_secret"]) == 401
    assert await token_status(registry, app["id"], app["client_secret"]) == 200
    assert (await admin.post(f"/v1/apps/{app['id']}/secrets")).status_code == 201


async def test_an_app_tells_when_its_last_secret_stops_working(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = await new_app(admin, "Expiring")
    assert app["secrets_expire_at"] is None
    first = (await admin.get(f"/v1/apps/{app['id']}")).json()["secrets"][0]
    later = datetime.now(UTC) + timedelta(days=10)
    added = await admin.post(
        f"/v1/apps/{app['id']}/secrets", json={"expires_at": later.isoformat()}
    )
    assert added.status_code == 201, added.text
    # The first secret never expires: the app's credentials do not end yet.
    assert (await admin.get(f"/v1/apps/{app['id']}")).json()["secrets_expire_at"] is None
    deleted = await admin.delete(f"/v1/apps/{app['id']}/secrets/{first['id']}")
    assert deleted.status_code == 204, deleted.text
    detail = (await admin.get(f"/v1/apps/{app['id']}")).json()
    assert datetime.fromisoformat(detail["secrets_expire_at"]) == later
    [row] = [row for row in (await admin.get("/v1/apps")).json()["apps"] if row["id"] == app["id"]]
    assert datetime.fromisoformat(row["secrets_expire_at"]) == later
    # The partner sees it in its own view, to rotate in time.
    token = await registry.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(app["id"], added.json()["client_secret"]),
    )
    assert token.status_code == 200, token.text
    me = await registry.client.get(
        "/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert me.status_code == 200, me.text
    assert datetime.fromisoformat(me.json()["secrets_expire_at"]) == later


@pytest.mark.parametrize(
    "body",
    [
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"expires_at": "2999-01-01T00:00:00Z"},
        {"expires_at": "2030-01-01T00:00:00"},
        {"expires_at": "soon"},
        {"secret": "mine"},
    ],
)
async def test_bad_secret_requests_are_refused(
    admin: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    app = await new_app(admin)
    assert_error(await admin.post(f"/v1/apps/{app['id']}/secrets", json=body), 422)


async def test_revoking_tokens_with_a_deleted_secret(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    app = await new_app(admin)
    token = await token_for(registry, app["id"], app["client_secret"])
    spare = (await admin.post(f"/v1/apps/{app['id']}/secrets")).json()
    [leaked] = [
        s
        for s in (await admin.get(f"/v1/apps/{app['id']}")).json()["secrets"]
        if s["id"] != spare["id"]
    ]
    gone = await admin.delete(
        f"/v1/apps/{app['id']}/secrets/{leaked['id']}", params={"revoke_tokens": "true"}
    )
    assert gone.status_code == 204
    introspected = await registry.client.post(
        "/oauth2/introspect",
        data={"token": token},
        auth=(tenant.client_id, tenant.client_secret),
    )
    assert introspected.json() == {"active": False}
    # The gateways hear of it: the app's state moved on, with the new cut-off.
    detail = (await admin.get(f"/v1/apps/{app['id']}")).json()
    assert [s["id"] for s in detail["secrets"]] == [spare["id"]]
    assert await token_status(registry, app["id"], spare["client_secret"]) == 200


async def test_other_tenants_cannot_touch_secrets(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = await new_app(admin)
    [secret] = (await admin.get(f"/v1/apps/{app['id']}")).json()["secrets"]
    other_app = await new_app(admin, "Other app of the same tenant")
    # A secret id of one app is not found under another app of the same tenant.
    assert_error(await admin.delete(f"/v1/apps/{other_app['id']}/secrets/{secret['id']}"), 404)
    stranger = await new_tenant(registry)
    token = await token_for(registry, stranger.client_id, stranger.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as other:
        assert_error(await other.post(f"/v1/apps/{app['id']}/secrets"), 404, "not_found")
        assert_error(await other.delete(f"/v1/apps/{app['id']}/secrets/{secret['id']}"), 404)
        assert_error(await other.post("/v1/apps/not-an-id/secrets"), 404)
        assert_error(await other.delete(f"/v1/admin-client/secrets/{secret['id']}"), 404)
    assert await token_status(registry, app["id"], app["client_secret"]) == 200


async def test_admin_client_rotation_cuts_off_the_old_credentials(
    registry: Running, tenant: Tenant
) -> None:
    old_token = await token_for(registry, tenant.client_id, tenant.client_secret)
    async with registry.new_client(Authorization=f"Bearer {old_token}") as admin:
        listed = (await admin.get("/v1/admin-client")).json()
        assert listed["client_id"] == tenant.client_id
        [old] = listed["secrets"]
        added = await admin.post("/v1/admin-client/secrets")
        assert added.status_code == 201, added.text
        fresh = added.json()["client_secret"]
        assert_error(await admin.post("/v1/admin-client/secrets"), 409, "too_many_secrets")
        # Both secrets work until the old one goes; the old token too, until revoked.
        assert await token_status(registry, tenant.client_id, tenant.client_secret) == 200
        gone = await admin.delete(
            f"/v1/admin-client/secrets/{old['id']}", params={"revoke_tokens": "true"}
        )
        assert gone.status_code == 204
        assert_error(await admin.get("/v1/apps"), 401, "unauthorized")
    assert await token_status(registry, tenant.client_id, tenant.client_secret) == 401
    new_token = await token_for(registry, tenant.client_id, fresh)
    async with registry.new_client(Authorization=f"Bearer {new_token}") as admin:
        assert (await admin.get("/v1/apps")).status_code == 200


async def test_no_secret_is_stored_in_plain_text(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient, registry_database: str
) -> None:
    app = await new_app(admin, "Dumped")
    added = (await admin.post(f"/v1/apps/{app['id']}/secrets")).json()
    values = [tenant.client_secret, app["client_secret"], added["client_secret"]]
    # The owner is bound by the tenant policies too: the dump holds the tenant's rows only.
    done = await asyncio.to_thread(
        subprocess.run,
        ["pg_dump", "--data-only", "--enable-row-security", asyncpg_dsn(registry_database)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PGOPTIONS": f"-c capps.tenant_id={tenant.tenant_id}"},
    )
    assert done.returncode == 0, done.stderr
    assert app["id"] in done.stdout  # the dump does hold the app
    for value in values:
        assert value not in done.stdout
        # Nor an unkeyed digest of it, which would let a dump alone check guesses.
        assert hashlib.sha256(value.encode()).hexdigest() not in done.stdout


async def test_secrets_stored_before_keying_keep_working(infra: Any) -> None:
    """A plain SHA-256 row written at revision 0002 authenticates after upgrading to head."""
    name = f"capps_registry_legacy_{datetime.now(UTC):%H%M%S%f}"
    root = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    await root.execute(f'CREATE DATABASE "{name}"')
    url = with_database(infra.database_url, name)
    try:
        config = alembic_config(url, TEST_PEPPER.encode())
        await asyncio.to_thread(command.upgrade, config, "0002_app_outbox")
        legacy = "an-old-url-safe-secret-of-43-characters-xx"
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute("INSERT INTO tenants (id, name) VALUES ('t1', 'Legacy')")
            await conn.execute(
                "INSERT INTO oauth_clients (id, tenant_id, kind, name) "
                "VALUES ('c1', 't1', 'app', 'Old app')"
            )
            await conn.execute(
                "INSERT INTO client_secrets (id, client_id, secret_hash, hint) "
                "VALUES ('s1', 'c1', $1, 'xx')",
                hashlib.sha256(legacy.encode()).digest(),
            )
        finally:
            await conn.close()
        await asyncio.to_thread(command.upgrade, config, "head")
        pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=1)
        try:
            async with tenant_transaction(pool, "t1") as conn:
                stored = await conn.fetchval("SELECT secret_hash FROM client_secrets")
            assert bytes(stored) != hashlib.sha256(legacy.encode()).digest()
            client = await authenticate_client(
                pool, TEST_PEPPER.encode(), ClientCredentials("c1", legacy, "client_secret_post")
            )
            assert client.id == "c1"
            with pytest.raises(Exception, match="client authentication failed"):
                await authenticate_client(
                    pool, b"another pepper", ClientCredentials("c1", legacy, "client_secret_post")
                )
        finally:
            await pool.close()
    finally:
        await root.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await root.close()
