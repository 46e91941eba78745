"""GET /v1/apps: cursor pages; sorted by name, last seen or requests; where stats come from."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from capps_usage.hot import HOT_READY_KEY
from capps_usage.keys import day_field, day_key, hour_key, minute_field, minute_floor, seen_key
from tests.integration.registry.conftest import Running, new_tenant, tenant_of, token_for
from tests.integration.registry.test_registry_admin_api import assert_error

pytestmark = pytest.mark.integration


async def all_pages(admin: httpx.AsyncClient, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every app, following next_cursor; and how many pages it took."""
    apps: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        response = await admin.get("/v1/apps", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        apps += body["apps"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return apps, pages


async def fresh_admin(registry: Running) -> httpx.AsyncClient:
    tenant = await new_tenant(registry)
    token = await token_for(registry, tenant.client_id, tenant.client_secret)
    return registry.new_client(Authorization=f"Bearer {token}")


async def record_usage(registry: Running, app_id: str, requests: int, seen_ago_s: int) -> None:
    """Counters in Redis as the aggregator writes them: this minute, today, last seen.

    With the completeness marker the aggregator keeps beside them (another test may have
    flushed it), or the registry rightly answers from PostgreSQL instead.
    """
    now = datetime.now(UTC)
    minute = minute_floor(now)
    redis = registry.state.redis
    await redis.set(HOT_READY_KEY, 1)
    await redis.set(seen_key(app_id), int((now - timedelta(seconds=seen_ago_s)).timestamp() * 1000))
    await redis.hset(hour_key(app_id, minute), minute_field(minute), requests)
    await redis.hset(day_key(app_id), day_field(now.date()), requests)


async def test_pages_by_name_cover_every_app_once(registry: Running) -> None:
    async with await fresh_admin(registry) as admin:
        names = ["delta", "Alpha", "charlie", "bravo", "echo"]
        for name in names:
            await admin.post("/v1/apps", json={"name": name, "permissions": []})
        apps, pages = await all_pages(admin, limit=2)
        assert [app["name"] for app in apps] == sorted(names)
        assert pages == 3
        first = (await admin.get("/v1/apps", params={"limit": 5})).json()
        assert first["next_cursor"] is None


async def test_sorted_by_requests_and_last_seen(registry: Running) -> None:
    async with await fresh_admin(registry) as admin:
        made = {}
        for name, requests, seen_ago in (("quiet", 1, 10), ("busy", 50, 300), ("mid", 7, 60)):
            app = (await admin.post("/v1/apps", json={"name": name, "permissions": []})).json()
            made[name] = app["id"]
            await record_usage(registry, app["id"], requests, seen_ago)
        await admin.post("/v1/apps", json={"name": "never", "permissions": []})

        by_requests, _ = await all_pages(admin, sort="requests", limit=1)
        assert [app["name"] for app in by_requests] == ["busy", "mid", "quiet", "never"]
        assert [app["requests_24h"] for app in by_requests] == [50, 7, 1, 0]
        by_seen, pages = await all_pages(admin, sort="last_seen", limit=3)
        assert [app["name"] for app in by_seen] == ["quiet", "mid", "busy", "never"]
        assert pages == 2
        assert by_seen[0]["trend_30d"][-1]["requests"] == 1


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"sort": "created"}, 422),
        ({"limit": 0}, 422),
        ({"limit": 201}, 422),
        ({"cursor": "not a cursor"}, 400),
        ({"cursor": "WyJhdWRpdCIsWzFdXQ"}, 400),  # a cursor of the audit trail
    ],
)
async def test_bad_list_parameters_are_refused(
    admin: httpx.AsyncClient, params: dict[str, Any], status: int
) -> None:
    assert_error(await admin.get("/v1/apps", params=params), status)


async def test_a_cursor_of_one_sort_is_refused_by_another(registry: Running) -> None:
    async with await fresh_admin(registry) as admin:
        for name in ("a", "b"):
            await admin.post("/v1/apps", json={"name": name, "permissions": []})
        cursor = (await admin.get("/v1/apps", params={"limit": 1})).json()["next_cursor"]
        assert cursor
        refused = await admin.get("/v1/apps", params={"cursor": cursor, "sort": "requests"})
        assert_error(refused, 400, "bad_cursor")


async def test_postgres_answers_while_the_hot_store_is_not_ready(
    registry: Running, owner_pool: asyncpg.Pool
) -> None:
    """With the marker gone (a Redis restart without data), stats come from PostgreSQL."""
    async with await fresh_admin(registry) as admin:
        app = (await admin.post("/v1/apps", json={"name": "Cold", "permissions": []})).json()
        tenant_id = await tenant_of(registry, app["id"])
        now = datetime.now(UTC)
        minute = minute_floor(now)
        pool = owner_pool
        await pool.execute(
            "INSERT INTO usage_minute (app_id, tenant_id, minute, requests) VALUES "
            "($1, $2, $3, 5), ($1, $2, $4, 9)",
            app["id"],
            tenant_id,
            minute,
            minute - timedelta(hours=25),
        )
        await pool.execute(
            "INSERT INTO usage_day (app_id, tenant_id, day, requests) VALUES ($1, $2, $3, 14)",
            app["id"],
            tenant_id,
            now.date(),
        )
        await pool.execute(
            "INSERT INTO app_last_seen (app_id, tenant_id, last_seen) VALUES ($1, $2, $3)",
            app["id"],
            tenant_id,
            now,
        )
        # Redis holds something else (a partial rebuild): without the marker it is not read.
        await registry.state.redis.hset(hour_key(app["id"], minute), minute_field(minute), 999)
        await registry.state.redis.delete(HOT_READY_KEY)
        try:
            detail = (await admin.get(f"/v1/apps/{app['id']}")).json()
            assert detail["requests_24h"] == 5
            assert detail["trend_30d"][-1] == {"date": now.date().isoformat(), "requests": 14}
            assert datetime.fromisoformat(detail["last_seen"]) == now
            for sort in ("last_seen", "requests"):
                [listed] = (await admin.get("/v1/apps", params={"sort": sort})).json()["apps"]
                assert listed["requests_24h"] == 5
                assert datetime.fromisoformat(listed["last_seen"]) == now
            await registry.state.redis.set(HOT_READY_KEY, 1)
            assert (await admin.get(f"/v1/apps/{app['id']}")).json()["requests_24h"] == 999
        finally:
            await registry.state.redis.set(HOT_READY_KEY, 1)
