"""Sorting by requests through the tenant's snapshot of counts: fresh, stale, new apps."""

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from capps_registry.usage.sort_snapshot import FRESH_S, snapshot_key, sorted_requests_24h
from tests.integration.registry.conftest import Running, new_tenant, token_for
from tests.integration.registry.test_registry_app_list import record_usage

pytestmark = pytest.mark.integration
DEADLINE_S = 30.0


async def by_requests(admin: httpx.AsyncClient) -> list[tuple[str, int]]:
    """The list sorted by requests: each app's name and the count it shows."""
    response = await admin.get("/v1/apps", params={"sort": "requests"})
    assert response.status_code == 200, response.text
    return [(app["name"], app["requests_24h"]) for app in response.json()["apps"]]


async def new_app(admin: httpx.AsyncClient, name: str) -> str:
    created = await admin.post("/v1/apps", json={"name": name, "permissions": []})
    assert created.status_code == 201, created.text
    app_id: str = created.json()["id"]
    return app_id


async def snapshot(registry: Running, tenant_id: str) -> dict[str, Any] | None:
    stored = await registry.state.redis.get(snapshot_key(tenant_id))
    return None if stored is None else dict(orjson.loads(stored))


async def test_a_stale_snapshot_orders_the_list_until_the_background_recount(
    registry: Running,
) -> None:
    tenant = await new_tenant(registry)
    token = await token_for(registry, tenant.client_id, tenant.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as admin:
        ids = {name: await new_app(admin, name) for name in ("a", "b", "c")}
        for name, requests in (("a", 5), ("b", 1), ("c", 3)):
            await record_usage(registry, ids[name], requests, seen_ago_s=10)
        # No snapshot yet: this call counts every app and keeps the counts.
        assert await by_requests(admin) == [("a", 5), ("c", 3), ("b", 1)]
        kept = await snapshot(registry, tenant.tenant_id)
        assert kept is not None
        assert kept["counts"] == {ids["a"]: 5, ids["b"]: 1, ids["c"]: 3}

        # Within FRESH_S the order is the snapshot's, while each row shows its current count.
        await record_usage(registry, ids["b"], 10, seen_ago_s=1)
        assert await by_requests(admin) == [("a", 5), ("c", 3), ("b", 10)]

        # Once stale, the snapshot still answers, and a background recount replaces it.
        kept["at"] -= (FRESH_S + 5) * 1000
        await registry.state.redis.set(snapshot_key(tenant.tenant_id), orjson.dumps(kept))
        deadline = time.monotonic() + DEADLINE_S
        while (order := await by_requests(admin))[0][0] != "b":
            assert order == [("a", 5), ("c", 3), ("b", 10)]
            assert time.monotonic() < deadline, "the stale snapshot was never counted again"
            await asyncio.sleep(0.05)
        assert order == [("b", 10), ("a", 5), ("c", 3)]
        recounted = await snapshot(registry, tenant.tenant_id)
        assert recounted is not None
        assert recounted["at"] > kept["at"]
        assert recounted["counts"][ids["b"]] == 10


async def test_apps_created_after_the_snapshot_are_counted_on_the_spot(
    registry: Running,
) -> None:
    tenant = await new_tenant(registry)
    token = await token_for(registry, tenant.client_id, tenant.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as admin:
        old = await new_app(admin, "old")
        await record_usage(registry, old, 2, seen_ago_s=10)
        assert await by_requests(admin) == [("old", 2)]
        newer = await new_app(admin, "newer")
        await record_usage(registry, newer, 7, seen_ago_s=1)
        assert await by_requests(admin) == [("newer", 7), ("old", 2)]
        # A deleted app leaves the list even while the snapshot still counts it.
        assert (await admin.delete(f"/v1/apps/{newer}")).status_code == 204
        assert await by_requests(admin) == [("old", 2)]


async def test_a_filtered_list_never_stores_a_partial_snapshot(registry: Running) -> None:
    tenant = await new_tenant(registry)
    token = await token_for(registry, tenant.client_id, tenant.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as admin:
        ids = [await new_app(admin, name) for name in ("x", "y")]
    for app_id, requests in zip(ids, (4, 6), strict=True):
        await record_usage(registry, app_id, requests, seen_ago_s=5)
    # The page filtered to one app asks for that app's count alone.
    counts = await sorted_requests_24h(registry.state, tenant.tenant_id, ids[:1], every_app=False)
    assert counts == {ids[0]: 4}
    # The snapshot, made in the background, counts every app of the tenant.
    deadline = time.monotonic() + DEADLINE_S
    while (kept := await snapshot(registry, tenant.tenant_id)) is None:
        assert time.monotonic() < deadline, "no snapshot was made"
        await asyncio.sleep(0.05)
    assert kept["counts"] == {ids[0]: 4, ids[1]: 6}
