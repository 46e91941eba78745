"""Per-app token leases against the real Redis and real gateway processes: a hot app is served
mostly from leases and still never gets more than its limit per window, a lease leaves most of
what is left to other processes, and a changed limit voids a lease at once.

Each test uses an app of its own; metrics are read as differences on gateways of its own.
"""

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from multidict import CIMultiDict
from prometheus_client import REGISTRY

from capps_events import RateLimit
from capps_gateway.ratelimit import RateLimiter
from capps_kit.redis import create_redis
from tests.infra import free_port, running_process

from .conftest import (
    ALL_ROLES,
    REPO,
    AppStates,
    Gateway,
    Signer,
    StartGateway,
    metric_sample,
)
from .test_gateway_ratelimit import call, minute_counters

pytestmark = pytest.mark.integration

LEASE = 'capps_gateway_ratelimit_checks_total{source="lease"}'
REDIS = 'capps_gateway_ratelimit_checks_total{source="redis"}'
Answer = tuple[int, CIMultiDict[str]]


def new_app() -> str:
    return f"app-lease-{uuid.uuid4().hex[:8]}"


async def counted(app_id: str, redis_url: str) -> list[int]:
    """The admitted (and leased) counts of every minute window of the app in Redis."""
    client = redis.Redis.from_url(redis_url)
    try:
        return await minute_counters(client, app_id)
    finally:
        await client.aclose()


async def hammer(
    http: aiohttp.ClientSession, url: str, token: str, *, calls: int, callers: int
) -> list[Answer]:
    """`calls` calls by `callers` concurrent callers, each calling again as soon as answered."""
    left = iter(range(calls))
    answers: list[Answer] = []

    async def caller() -> None:
        # One after another: the iterator is shared, so the callers split the calls.
        answers.extend([await call(http, url, token) for _ in left])

    await asyncio.gather(*(caller() for _ in range(callers)))
    return answers


async def checks_by_source(http: aiohttp.ClientSession, gateway: Gateway) -> Counter[str]:
    return Counter(
        {
            "lease": await metric_sample(http, gateway, LEASE),
            "redis": await metric_sample(http, gateway, REDIS),
        }
    )


async def app_on_two_gateways(  # noqa: PLR0917 - the tests' fixtures, passed on
    limit: RateLimit,
    start_gateway: StartGateway,
    demo_api_url: str,
    apps: AppStates,
    signer: Signer,
    http: aiohttp.ClientSession,
) -> tuple[str, list[Gateway], str, list[Counter[str]]]:
    """A new app with `limit`, two gateway processes, the app's token, and each gateway's
    checks by source before any call."""
    app_id = new_app()
    await apps.put(app_id, rate_limit=limit)
    gateways = list(await asyncio.gather(start_gateway(demo_api_url), start_gateway(demo_api_url)))
    token = signer.token(ALL_ROLES, client_id=app_id)
    before = [await checks_by_source(http, gateway) for gateway in gateways]
    return app_id, gateways, token, before


def minutes_spanned(started: float, ended: float) -> int:
    return int(ended // 60) - int(started // 60) + 1


@pytest.mark.timeout(240)
async def test_a_hot_app_is_served_mostly_from_leases_across_two_gateways(
    start_gateway: StartGateway,
    demo_api_url: str,
    apps: AppStates,
    signer: Signer,
    *,
    infra: Any,
    http: aiohttp.ClientSession,
) -> None:
    limit = RateLimit(per_minute=1_000_000, per_hour=10_000_000)
    app_id, gateways, token, before = await app_on_two_gateways(
        limit, start_gateway, demo_api_url, apps, signer, http
    )
    per_gateway = 1500
    answers = await asyncio.gather(
        *(hammer(http, g.url, token, calls=per_gateway, callers=16) for g in gateways)
    )
    for gateway, start, found in zip(gateways, before, answers, strict=True):
        assert Counter(status for status, _ in found) == {200: per_gateway}
        checks = await checks_by_source(http, gateway)
        checks.subtract(start)
        # Every call was checked once, most of them without a round trip to Redis.
        assert checks["lease"] + checks["redis"] == per_gateway, checks
        assert checks["lease"] > per_gateway / 2, checks
        for _, headers in found:
            assert headers["RateLimit-Policy"].startswith('"minute";q=1000000;w=60')
    counters = await counted(app_id, infra.redis_url)
    assert all(count <= limit.per_minute for count in counters)
    assert sum(counters) >= 2 * per_gateway


@pytest.mark.timeout(240)
async def test_a_hot_app_on_two_gateways_never_gets_more_than_a_small_limit_per_window(
    start_gateway: StartGateway,
    demo_api_url: str,
    apps: AppStates,
    signer: Signer,
    *,
    infra: Any,
    http: aiohttp.ClientSession,
) -> None:
    limit = RateLimit(per_minute=300, per_hour=100_000)
    app_id, gateways, token, before = await app_on_two_gateways(
        limit, start_gateway, demo_api_url, apps, signer, http
    )
    started = time.time()
    answers = await asyncio.gather(
        *(hammer(http, g.url, token, calls=4 * limit.per_minute, callers=16) for g in gateways)
    )
    ended = time.time()
    statuses = Counter(status for found in answers for status, _ in found)
    assert set(statuses) <= {200, 429}, statuses
    counters = await counted(app_id, infra.redis_url)
    assert all(count <= limit.per_minute for count in counters), counters
    assert statuses[200] <= sum(counters)
    assert statuses[200] <= limit.per_minute * minutes_spanned(started, ended)
    assert statuses[200] >= 0.99 * limit.per_minute
    leased = 0.0
    for gateway, start in zip(gateways, before, strict=True):
        checks = await checks_by_source(http, gateway)
        leased += checks["lease"] - start["lease"]
    # Leases were in play: some checks were answered from them.
    assert leased > 0
    for found in answers:
        for status, headers in found:
            if status == 429:
                assert 1 <= int(headers["Retry-After"]) <= 60


async def test_a_lease_leaves_most_of_what_is_left_to_other_processes(infra: Any) -> None:
    # Two limiters with their own Redis clients are two processes as Redis sees them. The first
    # counts any quick succession of round trips as hot, so its leases grow without fail.
    hot = RateLimiter(redis.Redis.from_url(infra.redis_url), fallback_share=1, grow_within_s=3600)
    other = RateLimiter(redis.Redis.from_url(infra.redis_url), fallback_share=1)
    app_id = new_app()
    limit = RateLimit(per_minute=800, per_hour=8000)
    try:
        hot_admitted = 0
        for _ in range(300):
            hot_admitted += (await hot.check(app_id, limit)).allowed
        found = await asyncio.gather(*(other.check(app_id, limit) for _ in range(3 * 800)))
        other_admitted = sum(decision.allowed for decision in found)
        # Read after the burst: a refill the hot process queued may have been answered during it.
        held = hot.leased_tokens(app_id)
    finally:
        await hot.close()
        await other.close()
    counters = await counted(app_id, infra.redis_url)
    if len(counters) == 1:  # one minute window: what was counted was admitted or is still held
        assert counters == [hot_admitted + other_admitted + held]
        assert counters == [limit.per_minute]
    # The hot process leased ahead, but left at least 7/8 of the rest to the other.
    assert held > 0
    assert other_admitted >= (limit.per_minute - hot_admitted) * 7 // 8


@pytest.mark.timeout(180)
async def test_a_changed_limit_voids_the_lease_at_once(
    start_gateway: StartGateway,
    demo_api_url: str,
    apps: AppStates,
    signer: Signer,
    http: aiohttp.ClientSession,
) -> None:
    app_id = new_app()
    await apps.put(app_id, rate_limit=RateLimit(per_minute=1_000_000, per_hour=10_000_000))
    gateway = await start_gateway(demo_api_url)
    token = signer.token(ALL_ROLES, client_id=app_id)
    lowered = RateLimit(per_minute=5, per_hour=10_000_000)
    lowered_policy = '"minute";q=5;w=60'
    answers: list[Answer] = []
    stop = asyncio.Event()

    async def caller() -> None:
        while not stop.is_set():
            answers.append(await call(http, gateway.url, token))

    callers = [asyncio.create_task(caller()) for _ in range(16)]
    try:
        # Hot first: the gateway serves the app from leases, and keeps refilling them.
        deadline = time.monotonic() + 60
        while await metric_sample(http, gateway, LEASE) < 500:
            assert time.monotonic() < deadline, "the hot app was never served from a lease"
            await asyncio.sleep(0.2)
        changed = time.time()
        await apps.put(app_id, rate_limit=lowered)
        deadline = time.monotonic() + 30
        while not any(lowered_policy in h["RateLimit-Policy"] for _, h in answers[-50:]):
            assert time.monotonic() < deadline, "the lowered limit never showed"
            await asyncio.sleep(0.1)
        seen = len(answers)
        while len(answers) < seen + 300:
            assert time.monotonic() < deadline, "calls stopped being answered"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        for task in callers:
            with contextlib.suppress(Exception):
                await task
    ended = time.time()
    under_lowered = [status for status, h in answers if lowered_policy in h["RateLimit-Policy"]]
    # The minute had counted far more than 5 already: under the new limit at most 5 pass per
    # minute (none in that one), whatever tokens the lease still held.
    assert len(under_lowered) >= 300
    assert under_lowered.count(200) <= lowered.per_minute * minutes_spanned(changed, ended)
    assert under_lowered.count(429) > 0


@pytest.fixture
async def own_redis(tmp_path: Path) -> "AsyncIterator[tuple[str, subprocess.Popen[bytes]]]":
    """A Redis server of this test's own (to stop without touching the stack's)."""
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(tmp_path)]
    with running_process(args, {}, tmp_path / "redis.log", REPO) as process:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                await client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, (tmp_path / "redis.log").read_text()
                assert time.monotonic() < deadline, "own redis-server did not answer"
                await asyncio.sleep(0.05)
        await client.aclose()
        yield f"redis://127.0.0.1:{port}/0", process


def lease_checks() -> float:
    return (
        REGISTRY.get_sample_value("capps_gateway_ratelimit_checks_total", {"source": "lease"})
        or 0.0
    )


async def test_without_redis_a_valid_lease_is_spent_first_then_the_fallback_decides(
    own_redis: tuple[str, "subprocess.Popen[bytes]"],
) -> None:
    url, server = own_redis
    limiter = RateLimiter(create_redis(url, timeout_s=0.25), fallback_share=2, grow_within_s=3600)
    app_id = new_app()
    limit = RateLimit(per_minute=10_000, per_hour=100_000)
    try:
        started_minute = int(time.time()) // 60
        for _ in range(200):
            assert (await limiter.check(app_id, limit)).allowed
            if limiter.leased_tokens(app_id) >= 20:
                break
        held = limiter.leased_tokens(app_id)
        assert held >= 20
        server.kill()
        server.wait()
        # Another app's check finds Redis away: the limiter is in fallback from here on.
        await limiter.check(new_app(), limit)
        assert limiter.redis_error is not None
        before = lease_checks()
        spent = [await limiter.check(app_id, limit) for _ in range(held)]
        from_lease = lease_checks() - before
        after_lease = await limiter.check(app_id, limit)
        same_minute = int(time.time()) // 60 == started_minute
    finally:
        await limiter.close()
    assert all(decision.allowed for decision in spent)
    if same_minute:  # the lease's window lasted throughout: every token was spent
        assert from_lease == held
    else:  # the minute ended meanwhile: the rest of the lease expired, the fallback took over
        assert from_lease <= held
    # Spent, the lease gives way to the fallback: limit / 2 in this process alone.
    assert after_lease.allowed
    assert after_lease.limit.per_minute == limit.per_minute // 2
