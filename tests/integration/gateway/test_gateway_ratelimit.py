"""Per-app rate limits against the real Redis: exact across two gateway processes, batched,
with the IETF headers on every answer, and a local fallback when Redis does not answer.

Windows are fixed UTC minutes: a burst may straddle two, so exactness is checked per window
from the counters in Redis (each at most the limit, together at least the calls admitted: a
process's leased tokens are counted when leased, and a lease left unspent when its window ends
stays counted). Leases themselves: test_gateway_ratelimit_leases.py.
"""

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from multidict import CIMultiDict
from prometheus_client import REGISTRY

from capps_events import RateLimit
from capps_gateway.ratelimit import RateLimiter
from capps_usage.ratelimit import KEY_PREFIX
from tests.infra import free_port

from .conftest import ALL_ROLES, AppStates, Gateway, Signer, StartGateway

pytestmark = pytest.mark.integration

LIMIT = 200
BURST = 3 * LIMIT


def new_app() -> str:
    return f"app-rl-{uuid.uuid4().hex[:8]}"


async def minute_counters(client: "redis.Redis", app_id: str) -> list[int]:
    """The admitted counts of every minute window of the app in Redis."""
    keys = [key async for key in client.scan_iter(match=f"{KEY_PREFIX}{app_id}:minute:*")]
    return [int(value or 0) for value in await client.mget(keys)] if keys else []


async def call(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, CIMultiDict[str]]:
    async with http.get(
        f"{url}/api/alerts", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        await response.read()
        return response.status, response.headers.copy()


async def test_concurrent_checks_share_round_trips_and_admit_exactly_the_limit(
    infra: Any,
) -> None:
    client = redis.Redis.from_url(infra.redis_url)
    limiter = RateLimiter(redis.Redis.from_url(infra.redis_url), fallback_share=1)
    app_id = new_app()
    limit = RateLimit(per_minute=LIMIT, per_hour=LIMIT * 10)
    trips_before = REGISTRY.get_sample_value("capps_gateway_ratelimit_round_trips_total") or 0.0
    try:
        found = await asyncio.gather(*(limiter.check(app_id, limit) for _ in range(BURST)))
        trips = REGISTRY.get_sample_value("capps_gateway_ratelimit_round_trips_total") or 0.0
        trips -= trips_before
        admitted = sum(decision.allowed for decision in found)
        counters = await minute_counters(client, app_id)
    finally:
        await limiter.close()
        await client.aclose()
    assert all(count <= LIMIT for count in counters)
    assert sum(counters) == admitted
    assert admitted >= 0.99 * LIMIT
    assert limiter.redis_error is None
    # Concurrent checks share round trips instead of taking one each.
    assert trips <= BURST / 10


@pytest.mark.timeout(180)
async def test_two_gateway_processes_never_admit_more_than_the_limit(
    start_gateway: StartGateway,
    demo_api_url: str,
    apps: AppStates,
    signer: Signer,
    *,
    infra: Any,
    http: aiohttp.ClientSession,
) -> None:
    app_id = new_app()
    await apps.put(app_id, rate_limit=RateLimit(per_minute=LIMIT, per_hour=LIMIT * 10))
    first, second = await asyncio.gather(start_gateway(demo_api_url), start_gateway(demo_api_url))
    token = signer.token(ALL_ROLES, client_id=app_id)
    gateways: list[Gateway] = [first, second]
    answers = await asyncio.gather(*(call(http, gateways[n % 2].url, token) for n in range(BURST)))
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {200, 429}, statuses
    client = redis.Redis.from_url(infra.redis_url)
    try:
        counters = await minute_counters(client, app_id)
    finally:
        await client.aclose()
    assert all(count <= LIMIT for count in counters), counters
    assert sum(counters) >= statuses[200]
    assert statuses[200] >= 0.99 * LIMIT
    for status, headers in answers:
        assert (
            headers["RateLimit-Policy"] == f'"minute";q={LIMIT};w=60, "hour";q={LIMIT * 10};w=3600'
        )
        assert headers["RateLimit"].startswith('"minute";r=')
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= 60
            assert headers["Content-Type"].startswith("application/json")


async def test_a_refused_call_is_still_one_counted_event(
    gateway: Gateway,
    apps: AppStates,
    signer: Signer,
    event_log: Any,
    http: aiohttp.ClientSession,
) -> None:
    app_id = new_app()
    await apps.put(app_id, rate_limit=RateLimit(per_minute=1, per_hour=10))
    token = signer.token(ALL_ROLES, client_id=app_id)
    request_ids = [uuid.uuid4().hex for _ in range(3)]
    statuses = []
    for request_id in request_ids:
        async with http.get(
            f"{gateway.url}/api/alerts",
            headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
        ) as response:
            await response.read()
            statuses.append(response.status)
    assert statuses.count(429) >= 1
    await event_log.wait_for(request_ids)
    for request_id, status in zip(request_ids, statuses, strict=True):
        [event] = event_log.by_request[request_id]
        assert event.status == status
        assert event.app_id == app_id


async def test_without_redis_each_process_limits_alone_and_says_so(
    start_gateway: StartGateway,
    demo_api_url: str,
    apps: AppStates,
    signer: Signer,
    http: aiohttp.ClientSession,
) -> None:
    app_id = new_app()
    await apps.put(app_id, rate_limit=RateLimit(per_minute=10, per_hour=100))
    gateway = await start_gateway(
        demo_api_url,
        extra_env={
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "GATEWAY_RATELIMIT_FALLBACK_PROCESSES": "2",
        },
    )
    token = signer.token(ALL_ROLES, client_id=app_id)
    started_minute = int(time.time()) // 60
    answers = [await call(http, gateway.url, token) for _ in range(8)]
    statuses = [status for status, _ in answers]
    # 10 per minute shared by 2 processes: this one alone admits 5 a minute, and says so.
    assert all('"minute";q=5;w=60' in headers["RateLimit-Policy"] for _, headers in answers)
    if int(time.time()) // 60 == started_minute:
        assert statuses == [200] * 5 + [429] * 3
    else:  # the calls straddled two minutes: at most 5 in each
        assert statuses[:5] == [200] * 5
        assert statuses.count(200) <= 10
    async with http.get(f"{gateway.admin_url}/readyz") as response:
        body = await response.json()
        assert response.status == 200
    assert body["checks"]["ratelimit"].startswith("degraded: Redis not answering")
    async with http.get(f"{gateway.admin_url}/metrics") as response:
        text = await response.text()
    assert "capps_gateway_ratelimit_fallback 1.0" in text
