"""GET /v1/apps/{id}/usage and /usage/routes over the aggregator's tables in PostgreSQL."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from capps_kit.postgres import asyncpg_dsn
from capps_usage.latency import BUCKET_COUNT, bucket_index
from tests.integration.registry.conftest import Running, new_tenant, tenant_of, token_for
from tests.integration.registry.test_registry_admin_api import assert_error

pytestmark = pytest.mark.integration

# A fixed past hour and day: the answers do not depend on when (or across which midnight)
# the test runs.
HOUR = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
DAY = HOUR.date()


async def app_with_usage(registry: Running, admin: httpx.AsyncClient) -> dict[str, Any]:
    """An app with usage rows written as the aggregator would (as the tables' owner)."""
    app: dict[str, Any] = (
        await admin.post(
            "/v1/apps",
            json={"name": "Used", "permissions": ["Alert.Read.All", "Machine.Isolate"]},
        )
    ).json()
    pool = await asyncpg.connect(asyncpg_dsn(registry.owner_url))
    tenant_id = await tenant_of(registry, app["id"])
    try:
        columns = (
            "app_id, tenant_id, {bucket}, requests, status_2xx, status_3xx, status_4xx, "
            "status_5xx, denied, throttled, latency_ms_sum, latency_ms_max, bytes_in, bytes_out"
        )
        await pool.execute(
            f"INSERT INTO usage_minute ({columns.format(bucket='minute')}) "
            "VALUES ($1, $2, $3, 10, 6, 1, 2, 1, 1, 1, 250.0, 90.0, 1000, 5000)",
            app["id"],
            tenant_id,
            HOUR + timedelta(minutes=5),
        )
        hist = [0] * BUCKET_COUNT
        hist[bucket_index(20.0)] = 19
        hist[bucket_index(900.0)] = 1
        await pool.execute(
            f"INSERT INTO usage_day ({columns.format(bucket='day')}, latency_hist) "
            "VALUES ($1, $2, $3, 20, 15, 0, 4, 1, 2, 1, 1300.0, 900.0, 10, 20, $4)",
            app["id"],
            tenant_id,
            DAY,
            hist,
        )
        today = datetime.now(UTC).date()
        await pool.execute(
            "INSERT INTO usage_route_day (app_id, tenant_id, day, method, route, requests, errors) "
            "VALUES ($1, $2, $3, 'GET', '/api/alerts/{id}', 12, 3), "
            "($1, $2, $4, 'GET', '/api/alerts', 5, 0), "
            "($1, $2, $5, 'GET', '/api/alerts', 100, 100)",
            app["id"],
            tenant_id,
            today,
            today - timedelta(days=6),
            today - timedelta(days=40),
        )
    finally:
        await pool.close()
    return app


async def test_minute_series_is_zero_filled_with_breakdowns(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = await app_with_usage(registry, admin)
    response = await admin.get(
        f"/v1/apps/{app['id']}/usage",
        params={
            "granularity": "minute",
            "from": HOUR.isoformat(),
            "to": (HOUR + timedelta(minutes=10)).isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["granularity"] == "minute"
    assert datetime.fromisoformat(body["from"]) == HOUR
    assert datetime.fromisoformat(body["to"]) == HOUR + timedelta(minutes=10)
    points = body["points"]
    assert len(points) == 10
    assert [datetime.fromisoformat(p["start"]) for p in points] == [
        HOUR + timedelta(minutes=n) for n in range(10)
    ]
    busy = points[5]
    assert busy["requests"] == 10
    assert (busy["status_2xx"], busy["status_3xx"], busy["status_4xx"], busy["status_5xx"]) == (
        6,
        1,
        2,
        1,
    )
    assert (busy["denied"], busy["throttled"]) == (1, 1)
    assert busy["latency_ms_avg"] == 25.0
    assert busy["latency_ms_max"] == 90.0
    assert (busy["bytes_in"], busy["bytes_out"]) == (1000, 5000)
    quiet = points[4]
    assert quiet["requests"] == 0
    assert quiet["latency_ms_avg"] is None


async def test_day_series_reads_p95_from_the_histogram(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = await app_with_usage(registry, admin)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC) - timedelta(days=2)
    body = (
        await admin.get(
            f"/v1/apps/{app['id']}/usage",
            params={
                "granularity": "day",
                "from": start.isoformat(),
                "to": (start + timedelta(days=5)).isoformat(),
            },
        )
    ).json()
    assert [point["requests"] for point in body["points"]] == [0, 0, 20, 0, 0]
    day = body["points"][2]
    # 19 of 20 calls within 20 ms: the 95th percentile sits in the 15-20 ms bucket.
    assert 15.0 <= day["latency_ms_p95"] <= 20.0
    assert day["latency_ms_max"] == 900.0


async def test_the_default_series_is_the_last_hour(admin: httpx.AsyncClient) -> None:
    app = (await admin.post("/v1/apps", json={"name": "New", "permissions": []})).json()
    body = (await admin.get(f"/v1/apps/{app['id']}/usage")).json()
    assert len(body["points"]) == 60
    assert all(point["requests"] == 0 for point in body["points"])
    days = (await admin.get(f"/v1/apps/{app['id']}/usage", params={"granularity": "day"})).json()
    assert len(days["points"]) == 30


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:01:00Z"}, 400),
        ({"granularity": "day", "from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, 400),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, 400),
        ({"from": "2026-03-01T00:00:00", "to": "2026-03-01T01:00:00Z"}, 400),
        ({"granularity": "hour"}, 422),
        ({"from": "yesterday"}, 422),
    ],
)
async def test_bad_ranges_are_refused(
    admin: httpx.AsyncClient, params: dict[str, str], status: int
) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Ranged", "permissions": []})).json()
    assert_error(await admin.get(f"/v1/apps/{app['id']}/usage", params=params), status)


async def test_routes_and_unused_permissions(registry: Running, admin: httpx.AsyncClient) -> None:
    app = await app_with_usage(registry, admin)
    body = (await admin.get(f"/v1/apps/{app['id']}/usage/routes")).json()
    assert body["days"] == 30
    assert body["routes"] == [
        {
            "method": "GET",
            "route": "/api/alerts/{id}",
            "permission": "Alert.Read.All",
            "requests": 12,
            "errors": 3,
        },
        {
            "method": "GET",
            "route": "/api/alerts",
            "permission": "Alert.Read.All",
            "requests": 5,
            "errors": 0,
        },
    ]
    assert body["unused_permissions"] == ["Machine.Isolate"]
    # Two days hold today's row whether or not UTC midnight passed since it was written.
    recent = (await admin.get(f"/v1/apps/{app['id']}/usage/routes", params={"days": 2})).json()
    assert [route["requests"] for route in recent["routes"]] == [12]
    for days in (0, 401, "x"):
        response = await admin.get(f"/v1/apps/{app['id']}/usage/routes", params={"days": days})
        assert_error(response, 422)


async def test_another_tenants_usage_is_not_found(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = await app_with_usage(registry, admin)
    stranger = await new_tenant(registry)
    token = await token_for(registry, stranger.client_id, stranger.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as other:
        assert_error(await other.get(f"/v1/apps/{app['id']}/usage"), 404, "not_found")
        assert_error(await other.get(f"/v1/apps/{app['id']}/usage/routes"), 404, "not_found")
        assert_error(await other.get("/v1/apps/not-an-id/usage"), 404)
