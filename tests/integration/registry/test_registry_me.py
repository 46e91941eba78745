"""GET /v1/me: the partner's own view with its own token, refused to anyone else."""

from datetime import UTC, datetime

import httpx
import pytest

from capps_usage.ratelimit import ratelimit_key, window_start
from tests.integration.registry.conftest import Running, Tenant, token_for
from tests.integration.registry.test_registry_admin_api import assert_error

pytestmark = pytest.mark.integration


async def test_an_app_sees_itself_with_its_headroom(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = (
        await admin.post(
            "/v1/apps",
            json={
                "name": "Partner",
                "permissions": ["Alert.Read.All"],
                "rate_limit": {"per_minute": 10, "per_hour": 100},
            },
        )
    ).json()
    token = await token_for(registry, app["id"], app["client_secret"])
    redis = registry.state.redis
    async with registry.new_client(Authorization=f"Bearer {token}") as partner:
        # The gateways' counters of the current windows, by Redis's clock; should the minute
        # turn between writing and reading, do it again in the new one.
        for _ in range(5):
            seconds, _micro = await redis.time()
            minute = window_start(int(seconds), 60)
            hour = window_start(int(seconds), 3600)
            await redis.set(ratelimit_key(app["id"], "minute", minute), 3, ex=180)
            await redis.set(ratelimit_key(app["id"], "hour", hour), 43, ex=3700)
            response = await partner.get("/v1/me")
            seconds_after, _micro = await redis.time()
            if window_start(int(seconds_after), 60) == minute:
                break
        assert response.status_code == 200, response.text
        me = response.json()
    assert me["id"] == app["id"]
    assert me["name"] == "Partner"
    assert me["permissions"] == ["Alert.Read.All"]
    assert me["rate_limit"] == {"per_minute": 10, "per_hour": 100}
    headroom = me["headroom"]
    assert headroom["minute_remaining"] == 7
    assert headroom["hour_remaining"] == 57
    resets = datetime.fromisoformat(headroom["minute_resets_at"])
    assert resets == datetime.fromtimestamp(minute + 60, UTC)
    assert datetime.fromisoformat(headroom["hour_resets_at"]) == datetime.fromtimestamp(
        hour + 3600, UTC
    )
    assert "rate-limit counters" in headroom["source"]
    assert len(me["trend_30d"]) == 30
    assert "client_secret" not in me
    assert "secrets" not in me


async def test_me_refuses_admin_tokens_and_admin_calls_refuse_app_tokens(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    assert_error(await admin.get("/v1/me"), 403, "forbidden")
    assert_error(await registry.client.get("/v1/me"), 401)
    app = (await admin.post("/v1/apps", json={"name": "P", "permissions": []})).json()
    token = await token_for(registry, app["id"], app["client_secret"])
    async with registry.new_client(Authorization=f"Bearer {token}") as partner:
        assert_error(await partner.get(f"/v1/apps/{app['id']}"), 403)
        assert_error(await partner.get("/v1/audit"), 403)
        assert_error(await partner.get(f"/v1/apps/{app['id']}/usage"), 403)


async def test_a_disabled_or_deleted_app_is_refused(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Gone soon", "permissions": []})).json()
    token = await token_for(registry, app["id"], app["client_secret"])
    async with registry.new_client(Authorization=f"Bearer {token}") as partner:
        assert (await partner.get("/v1/me")).status_code == 200
        await admin.patch(f"/v1/apps/{app['id']}", json={"enabled": False})
        assert_error(await partner.get("/v1/me"), 401)
        await admin.patch(f"/v1/apps/{app['id']}", json={"enabled": True})
        # Tokens issued before a disable stay dead after enabling again.
        assert_error(await partner.get("/v1/me"), 401)
    fresh = await token_for(registry, app["id"], app["client_secret"])
    async with registry.new_client(Authorization=f"Bearer {fresh}") as partner:
        assert (await partner.get("/v1/me")).status_code == 200
        await admin.delete(f"/v1/apps/{app['id']}")
        assert_error(await partner.get("/v1/me"), 401)
