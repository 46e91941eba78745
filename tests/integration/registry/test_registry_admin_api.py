"""The admin API against the real database and Redis: auth, tenancy, validation, stats."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from capps_usage.hot import HOT_READY_KEY
from capps_usage.keys import day_field, day_key, hour_key, minute_field, minute_floor, seen_key
from tests.integration.registry.conftest import Running, Tenant, new_tenant, token_for

pytestmark = pytest.mark.integration


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the one JSON error shape, targeted at the request id."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "target"}
    assert error["target"] == response.headers["X-Request-Id"]
    if code:
        assert error["code"] == code
    return error


async def test_create_list_and_get_an_app(admin: httpx.AsyncClient) -> None:
    today = datetime.now(UTC).date()
    created = await admin.post(
        "/v1/apps",
        json={
            "name": "  SIEM connector ",
            "description": "Pulls alerts",
            "permissions": ["Alert.Read.All", "Alert.Read.All", "Machine.Isolate"],
            "rate_limit": {"per_minute": 5_000_000, "per_hour": 100_000_000},
        },
    )
    assert created.status_code == 201, created.text
    app = created.json()
    assert created.headers["Location"] == f"/v1/apps/{app['id']}"
    assert app["name"] == "SIEM connector"
    assert app["permissions"] == ["Alert.Read.All", "Machine.Isolate"]
    assert app["rate_limit"] == {"per_minute": 5_000_000, "per_hour": 100_000_000}
    assert app["enabled"] is True
    assert len(app["client_secret"]) >= 43
    assert app["last_seen"] is None
    assert app["requests_24h"] == 0
    assert len(app["trend_30d"]) == 30
    # Today, UTC: the day it was when asked, or the next one if midnight passed since.
    assert app["trend_30d"][-1]["requests"] == 0
    assert app["trend_30d"][-1]["date"] in {today.isoformat(), datetime.now(UTC).date().isoformat()}

    listed = (await admin.get("/v1/apps")).json()["apps"]
    assert [entry["id"] for entry in listed] == [app["id"]]
    assert "client_secret" not in listed[0]

    detail = (await admin.get(f"/v1/apps/{app['id']}")).json()
    assert "client_secret" not in detail
    [secret] = detail["secrets"]
    assert set(secret) == {"id", "created_at", "expires_at", "last_used_at", "hint"}
    assert secret["hint"] == app["client_secret"][-4:]
    assert secret["last_used_at"] is None


async def test_defaults_and_permission_catalog(admin: httpx.AsyncClient) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Minimal", "permissions": []})).json()
    assert app["rate_limit"] == {"per_minute": 100, "per_hour": 1500}
    assert app["description"] == ""
    catalog = (await admin.get("/v1/permissions")).json()["permissions"]
    by_name = {entry["name"]: entry for entry in catalog}
    assert by_name["Alert.Read.All"]["routes"] == [
        {"method": "GET", "template": "/api/alerts"},
        {"method": "GET", "template": "/api/alerts/{id}"},
    ]
    assert by_name["Machine.Isolate"]["description"]


async def test_missing_and_bad_tokens_answer_401(registry: Running) -> None:
    missing = await registry.client.get("/v1/apps")
    assert_error(missing, 401, "unauthorized")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    for header in ("Bearer not-a-jwt", "Basic abc", "Bearer "):
        bad = await registry.client.get("/v1/apps", headers={"Authorization": header})
        assert_error(bad, 401, "unauthorized")
        assert bad.headers["WWW-Authenticate"].startswith("Bearer")


async def test_tampered_token_answers_401(registry: Running, tenant: Tenant) -> None:
    token = await token_for(registry, tenant.client_id, tenant.client_secret)
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[::-1]}"
    response = await registry.client.get(
        "/v1/apps", headers={"Authorization": f"Bearer {tampered}"}
    )
    assert_error(response, 401)


async def test_app_token_is_forbidden(registry: Running, admin: httpx.AsyncClient) -> None:
    app = (
        await admin.post("/v1/apps", json={"name": "Partner", "permissions": ["Alert.Read.All"]})
    ).json()
    token = await token_for(registry, app["id"], app["client_secret"])
    async with registry.new_client(Authorization=f"Bearer {token}") as partner:
        assert_error(await partner.get("/v1/apps"), 403, "forbidden")
        assert_error(await partner.get("/v1/permissions"), 403, "forbidden")
        assert_error(await partner.post("/v1/apps", json={"name": "x", "permissions": []}), 403)


async def test_other_tenants_apps_answer_404(registry: Running, admin: httpx.AsyncClient) -> None:
    mine = (await admin.post("/v1/apps", json={"name": "Mine", "permissions": []})).json()
    other_tenant = await new_tenant(registry)
    token = await token_for(registry, other_tenant.client_id, other_tenant.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as other:
        assert (await other.get("/v1/apps")).json() == {"apps": [], "next_cursor": None}
        assert_error(await other.get(f"/v1/apps/{mine['id']}"), 404, "not_found")
        assert_error(await other.patch(f"/v1/apps/{mine['id']}", json={"enabled": False}), 404)
        assert_error(await other.delete(f"/v1/apps/{mine['id']}"), 404)
        # The admin client itself is not an app, not even for its own tenant.
        assert_error(await other.get(f"/v1/apps/{other_tenant.client_id}"), 404)
    assert (await admin.get(f"/v1/apps/{mine['id']}")).json()["enabled"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"permissions": []}, "name"),
        ({"name": "", "permissions": []}, "name"),
        ({"name": "a\u0000b", "permissions": []}, "name"),
        ({"name": "x"}, "permissions"),
        ({"name": "x", "permissions": "Alert.Read.All"}, "permissions"),
        (
            {"name": "x", "permissions": [], "rate_limit": {"per_minute": 0, "per_hour": 10}},
            "rate_limit.per_minute",
        ),
        (
            {"name": "x", "permissions": [], "rate_limit": {"per_minute": 100, "per_hour": 50}},
            "rate_limit",
        ),
        ({"name": "x", "permissions": [], "tenant_id": "someone-else"}, "tenant_id"),
    ],
)
async def test_invalid_bodies_name_the_field(
    admin: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    error = assert_error(await admin.post("/v1/apps", json=body), 422, "validation_error")
    assert field in error["message"]


async def test_unknown_permissions_are_named(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/v1/apps", json={"name": "x", "permissions": ["Alert.Read.All", "Nope.All", "Zap"]}
    )
    error = assert_error(response, 400, "unknown_permission")
    assert "Nope.All" in error["message"]
    assert "Zap" in error["message"]
    assert "Alert.Read.All" not in error["message"]


async def test_malformed_json_and_unknown_routes(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    broken = await admin.post(
        "/v1/apps", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(broken, 422, "validation_error")
    assert_error(await registry.client.get("/no/such/route"), 404, "not_found")
    assert_error(await admin.get("/v1/apps/not-an-id"), 404, "not_found")
    assert_error(await admin.get(f"/v1/apps/{uuid.uuid4()}"), 404, "not_found")
    assert_error(await admin.put("/v1/apps"), 405)


async def test_request_id_is_echoed_as_target(registry: Running) -> None:
    response = await registry.client.get("/v1/apps", headers={"X-Request-Id": "req-123"})
    assert response.headers["X-Request-Id"] == "req-123"
    assert response.json()["error"]["target"] == "req-123"


async def test_patch_reconfigures(admin: httpx.AsyncClient) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Before", "permissions": []})).json()
    patched = await admin.patch(
        f"/v1/apps/{app['id']}",
        json={
            "name": "After",
            "permissions": ["Ti.ReadWrite.All"],
            "rate_limit": {"per_minute": 10, "per_hour": 20},
        },
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["name"] == "After"
    assert body["description"] == ""
    assert body["permissions"] == ["Ti.ReadWrite.All"]
    assert body["rate_limit"] == {"per_minute": 10, "per_hour": 20}
    assert body["updated_at"] >= app["updated_at"]
    bad = await admin.patch(f"/v1/apps/{app['id']}", json={"permissions": ["Nope"]})
    assert_error(bad, 400, "unknown_permission")
    null = await admin.patch(f"/v1/apps/{app['id']}", json={"name": None})
    assert_error(null, 422, "validation_error")


async def test_stats_come_from_redis(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Counted", "permissions": []})).json()
    redis = registry.state.redis
    await redis.set(HOT_READY_KEY, 1)
    # Write today's counters and read them back; should UTC midnight pass in between, do it
    # again on the new day, so the check always happens on one day.
    for _ in range(3):
        now = datetime.now(UTC)
        minute = minute_floor(now)
        three_days_ago = (now - timedelta(days=3)).date()
        keys = [seen_key(app["id"]), day_key(app["id"]), hour_key(app["id"], minute)]
        await redis.delete(*keys)
        await redis.set(seen_key(app["id"]), int(now.timestamp() * 1000))
        await redis.hset(
            day_key(app["id"]),
            mapping={day_field(now.date()): 7, day_field(three_days_ago): 4},
        )
        await redis.hset(hour_key(app["id"], minute), minute_field(minute), 7)
        listed = (await admin.get("/v1/apps")).json()["apps"]
        detail = (await admin.get(f"/v1/apps/{app['id']}")).json()
        if datetime.now(UTC).date() == now.date():
            break
    try:
        [entry] = [item for item in listed if item["id"] == app["id"]]
        for view in (entry, detail):
            assert view["requests_24h"] == 7
            assert view["last_seen"] is not None
            seen = datetime.fromisoformat(view["last_seen"])
            assert abs((seen - now).total_seconds()) < 1
            trend = view["trend_30d"]
            assert len(trend) == 30
            assert trend[-1] == {"date": now.date().isoformat(), "requests": 7}
            assert trend[-4] == {"date": three_days_ago.isoformat(), "requests": 4}
            assert sum(day["requests"] for day in trend) == 11
    finally:
        await redis.delete(*keys)


async def test_health_and_metrics(registry: Running) -> None:
    assert (await registry.client.get("/healthz")).json() == {"status": "ok"}
    ready = await registry.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    listed = (
        "capps_registry_http_requests_total",
        {"method": "GET", "route": "/v1/apps", "status": "401"},
    )
    refused = ("capps_registry_tokens_refused_total", {"reason": "unknown_client"})
    before = [sample(name, **labels) for name, labels in (listed, refused)]
    await registry.client.get("/v1/apps")
    await registry.client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": str(uuid.uuid4()),
            "client_secret": "x",
        },
    )
    after = [sample(name, **labels) for name, labels in (listed, refused)]
    assert after == [before[0] + 1, before[1] + 1]
    # The exposition shows the same samples.
    metrics = (await registry.client.get("/metrics")).text
    assert (
        'capps_registry_http_requests_total{method="GET",route="/v1/apps",status="401"} '
        f"{after[0]}"
    ) in metrics
