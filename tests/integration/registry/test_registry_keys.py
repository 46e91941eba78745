"""Signing key rotation: new tokens use the new key, old ones verify until they expire."""

import json

import pytest
from joserfc import jws

from capps_registry.oauth.service import keep_retired_seconds, load_signing_keys
from tests.integration.registry.conftest import Running, Tenant, token_for
from tests.integration.registry.test_registry_cli import run_cli

pytestmark = pytest.mark.integration


def kid_of(token: str) -> str:
    return str(jws.extract_compact(token.encode()).protected["kid"])


async def reload_keys(registry: Running, keep_retired_s: float) -> None:
    """What the background reload does, done now."""
    settings = registry.state.settings
    loaded = await load_signing_keys(
        registry.state.pool, settings.registry_key_encryption_key, keep_retired_s
    )
    registry.state.keys.replace_with(loaded)


async def test_rotation_keeps_old_tokens_until_they_expire(
    registry: Running, tenant: Tenant, registry_database: str
) -> None:
    settings = registry.state.settings
    keep = keep_retired_seconds(settings)
    old_token = await token_for(registry, tenant.client_id, tenant.client_secret)
    old_kid = kid_of(old_token)

    done = await run_cli("keys", "rotate", database_url=registry_database)
    assert done.returncode == 0, done.stderr
    rotated = json.loads(done.stdout)
    assert rotated["retired"] == [old_kid]
    await reload_keys(registry, keep)

    jwks = await registry.client.get("/.well-known/jwks.json")
    assert "max-age=60" in jwks.headers["Cache-Control"]
    kids = {key["kid"] for key in jwks.json()["keys"]}
    assert kids == {old_kid, rotated["kid"]}
    assert all("d" not in key for key in jwks.json()["keys"])
    new_token = await token_for(registry, tenant.client_id, tenant.client_secret)
    assert kid_of(new_token) == rotated["kid"]
    for token in (old_token, new_token):
        async with registry.new_client(Authorization=f"Bearer {token}") as admin:
            assert (await admin.get("/v1/apps")).status_code == 200

    # Once every token of the old key has expired (here: keep nothing retired), it leaves.
    await reload_keys(registry, 0)
    assert {
        key["kid"] for key in (await registry.client.get("/.well-known/jwks.json")).json()["keys"]
    } == {rotated["kid"]}
    async with registry.new_client(Authorization=f"Bearer {old_token}") as admin:
        assert (await admin.get("/v1/apps")).status_code == 401
    async with registry.new_client(Authorization=f"Bearer {new_token}") as admin:
        assert (await admin.get("/v1/apps")).status_code == 200
    await reload_keys(registry, keep)


async def test_keys_rotate_without_a_database_is_a_clear_error() -> None:
    done = await run_cli("keys", "rotate", database_url="postgresql://capps:capps@127.0.0.1:1/none")
    assert done.returncode == 1
    assert "PostgreSQL is not reachable" in done.stderr
