"""Registry figures: tokens/s (client_secret_basic) and GET /v1/apps latency at 1,000 apps.

Side by side in the same run: tokens/s beside `GET /healthz` on the same server (the
framework's ceiling there), and the list's latency beside `GET /v1/permissions` (the same
authentication, no stats). The tenant's apps get usage in Redis (the aggregator's layout:
the last 4 h of minutes, 30 days, last seen) and the same counts in PostgreSQL, so the list
reads real counters whichever store answers; the result records which one did (the hot
store's ready marker). The bench's counters expire within the hour; its rows are deleted.

With `REGISTRY_BASELINE_URL` set (another registry build serving the same stores, e.g. the
previous commit on another port), every list call is also timed there, interleaved, so a
change is measured before and after in one run.
"""

import asyncio
import base64
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import redis
import requests

from bench.progress import say, ticking
from bench.results import percentile
from bench.stack import TIMEOUT_S, new_tenant_admin, require_loopback
from bench.wrk import parse_wrk, wrk_path
from capps_kit.postgres import asyncpg_dsn
from capps_registry.usage.sort_snapshot import snapshot_key
from capps_usage.keys import (
    HOT_READY_KEY,
    HOUR_TOTAL_FIELD,
    day_field,
    day_key,
    hour_key,
    minute_field,
    minute_floor,
    seen_key,
    trend_days,
)

APPS = 1000
LIST_SAMPLES = 60
HOURS_OF_MINUTES = 4
KEY_TTL_S = 3600
BASELINE_LABEL = " (baseline)"
TOKEN_SCRIPT = """
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic {basic}"
"""


@dataclass(frozen=True, slots=True)
class RegistryTarget:
    """Where the registry and its stores are (from `.local/stack.env`)."""

    registry: str
    database_url: str
    redis_url: str
    baseline: str | None = None
    """Another registry build on the same stores, timed beside this one."""

    @classmethod
    def from_env(cls) -> "RegistryTarget":
        """Read what `make up` wrote; fail with a hint when the stack is not up."""
        try:
            return cls(
                os.environ["REGISTRY_URL"].rstrip("/"),
                os.environ["DATABASE_URL"],
                os.environ["REDIS_URL"],
                os.environ.get("REGISTRY_BASELINE_URL", "").rstrip("/") or None,
            )
        except KeyError as missing:
            raise SystemExit(
                f"{missing} is not set: run `make bench` (it runs `make up`)"
            ) from None


def _wrk(url: str, seconds: int, connections: int, script: str = "") -> dict[str, float]:
    """One wrk run (with a Lua script for a POST); 2xx/s and latency."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    command = [wrk_path(), "--latency", "-t1", f"-c{connections}", f"-d{seconds}s"]
    if script:
        command += ["-s", lua.name]
    try:
        done = subprocess.run(
            [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
        )
    finally:
        Path(lua.name).unlink()
    result = parse_wrk(done.stdout)
    return {"per_second": result.ok_per_second, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms}


def _create_apps(session: requests.Session, registry: str, count: int) -> list[dict[str, Any]]:
    apps = []
    for number in range(count):
        response = session.post(
            f"{registry}/v1/apps",
            json={
                "name": f"bench app {number:04d}",
                "permissions": ["Alert.Read.All"],
                "rate_limit": {"per_minute": 100_000_000, "per_hour": 1_000_000_000},
            },
            timeout=TIMEOUT_S,
        )
        response.raise_for_status()
        apps.append(response.json())
    return apps


def _hot_usage(client: redis.Redis, app_ids: list[str], now: datetime) -> None:
    """Counters as the aggregator writes them, app i with i+1 calls per minute."""
    top = minute_floor(now).replace(minute=0)
    pipe = client.pipeline(transaction=False)
    for index, app_id in enumerate(app_ids):
        for hours_back in range(HOURS_OF_MINUTES):
            hour = top - timedelta(hours=hours_back)
            fields = {minute_field(hour + timedelta(minutes=m)): index + 1 for m in range(60)}
            fields[HOUR_TOTAL_FIELD] = 60 * (index + 1)
            pipe.hset(hour_key(app_id, hour), mapping=fields)  # type: ignore[arg-type]
            pipe.expire(hour_key(app_id, hour), KEY_TTL_S)
        days = {day_field(day): (index + 1) * 100 for day in trend_days(now)}
        pipe.hset(day_key(app_id), mapping=days)  # type: ignore[arg-type]
        pipe.expire(day_key(app_id), KEY_TTL_S)
        seen_ms = int((now - timedelta(seconds=index)).timestamp() * 1000)
        pipe.set(seen_key(app_id), seen_ms, ex=KEY_TTL_S)
    pipe.execute()


async def _cold_usage(database_url: str, apps: list[tuple[str, str]], now: datetime) -> None:
    """The same counts in usage_minute, usage_day and app_last_seen."""
    top = minute_floor(now).replace(minute=0)
    minutes = [
        top - timedelta(hours=h) + timedelta(minutes=m)
        for h in range(HOURS_OF_MINUTES)
        for m in range(60)
    ]
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for index, (app_id, tenant_id) in enumerate(apps):
            await conn.copy_records_to_table(
                "usage_minute",
                records=[(app_id, tenant_id, minute, index + 1) for minute in minutes],
                columns=["app_id", "tenant_id", "minute", "requests"],
            )
            await conn.copy_records_to_table(
                "usage_day",
                records=[(app_id, tenant_id, day, (index + 1) * 100) for day in trend_days(now)],
                columns=["app_id", "tenant_id", "day", "requests"],
            )
        await conn.executemany(
            "INSERT INTO app_last_seen (app_id, tenant_id, last_seen) VALUES ($1, $2, $3) "
            "ON CONFLICT (app_id) DO UPDATE SET last_seen = excluded.last_seen",
            [
                (app_id, tenant_id, now - timedelta(seconds=i))
                for i, (app_id, tenant_id) in enumerate(apps)
            ],
        )
    finally:
        await conn.close()


async def _forget_usage(database_url: str, app_ids: list[str]) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for table in ("usage_minute", "usage_day", "app_last_seen"):
            await conn.execute(f"DELETE FROM {table} WHERE app_id = ANY($1::text[])", app_ids)
    finally:
        await conn.close()


def _latencies_ms(
    session: requests.Session, url: str, samples: int, before: Callable[[], object] | None = None
) -> list[float]:
    took = []
    for _ in range(samples):
        if before is not None:
            before()
        started = time.perf_counter()
        response = session.get(url, timeout=TIMEOUT_S)
        took.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return took


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": statistics.median(samples),
        "p95_ms": percentile(samples, 95),
        "samples": len(samples),
    }


def measure_registry(target: RegistryTarget, seconds: int, connections: int) -> dict[str, Any]:
    """Both figures and their baselines; returns the JSON-ready result."""
    registry = require_loopback(target.registry)
    admin = new_tenant_admin(registry)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {admin}"
    [load_app] = _create_apps(session, registry, 1)
    basic = base64.b64encode(f"{load_app['id']}:{load_app['client_secret']}".encode()).decode()
    tokens: dict[str, list[dict[str, float]]] = {"token_basic": [], "healthz": []}
    for number in range(2):
        with ticking(f"round {number + 1}/2: wrk POST /oauth2/token", expected_s=seconds):
            run = _wrk(
                f"{registry}/oauth2/token", seconds, connections, TOKEN_SCRIPT.format(basic=basic)
            )
        tokens["token_basic"].append(run)
        say(f"{run['per_second']:,.0f} tokens/s")
        with ticking(f"round {number + 1}/2: wrk GET /healthz (baseline)", expected_s=seconds):
            tokens["healthz"].append(_wrk(f"{registry}/healthz", seconds, connections))

    with ticking(f"creating {APPS} apps through the admin API"):
        apps = _create_apps(session, registry, APPS)
    app_ids = [app["id"] for app in apps]
    now = datetime.now(UTC)
    hot = redis.Redis.from_url(target.redis_url)
    tenant_id = _tenant_of(target.database_url, app_ids[0])
    try:
        with ticking("writing their usage to Redis and PostgreSQL"):
            _hot_usage(hot, app_ids, now)
            asyncio.run(_cold_usage(target.database_url, [(a, tenant_id) for a in app_ids], now))
        source = "redis" if hot.exists(HOT_READY_KEY) else "postgres"
        say(f"stats answered from {source} (the hot store's ready marker)")
        lists: dict[str, list[float]] = {}

        def forget() -> None:
            hot.delete(snapshot_key(tenant_id))

        servers = [("", registry)]
        if target.baseline:
            servers.append((BASELINE_LABEL, require_loopback(target.baseline)))
        for _ in range(2):  # interleaved rounds
            for name, path, before in (
                ("permissions_baseline", "/v1/permissions", None),
                ("list_by_name", "/v1/apps?limit=50", None),
                ("list_by_requests", "/v1/apps?limit=50&sort=requests", None),
                # Every call counts all 1,000 apps afresh: no sort snapshot to read.
                ("list_by_requests_uncached", "/v1/apps?limit=50&sort=requests", forget),
                ("list_by_last_seen", "/v1/apps?limit=50&sort=last_seen", None),
                ("list_by_name_200", "/v1/apps?limit=200", None),
            ):
                for label, server in servers:
                    with ticking(f"GET {path} x{LIST_SAMPLES // 2}{label}"):
                        lists.setdefault(name + label, []).extend(
                            _latencies_ms(session, f"{server}{path}", LIST_SAMPLES // 2, before)
                        )
    finally:
        asyncio.run(_forget_usage(target.database_url, app_ids))
    return {
        "apps": APPS,
        "stats_source": source,
        "baseline": target.baseline,
        "tokens_per_second": {
            key: {
                "median": statistics.median(run["per_second"] for run in runs),
                "p99_ms": statistics.median(run["p99_ms"] for run in runs),
                "runs": runs,
            }
            for key, runs in tokens.items()
        },
        "list_latency": {name: _summary(samples) for name, samples in lists.items()},
    }


def _tenant_of(database_url: str, app_id: str) -> str:
    async def fetch() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            # Across tenants only through the registry's lookup (row-level security).
            found: str = await conn.fetchval(
                "SELECT tenant_id FROM registry_client_tenants(ARRAY[$1::text])", app_id
            )
            return found
        finally:
            await conn.close()

    return asyncio.run(fetch())


def report_registry(result: dict[str, Any]) -> None:
    """Print the registry's figures beside their baselines."""
    tokens = result["tokens_per_second"]
    ratio = tokens["token_basic"]["median"] / max(tokens["healthz"]["median"], 1)
    print(
        f"\nregistry: {tokens['token_basic']['median']:,.0f} tokens/s (client_secret_basic,"
        f" p99 {tokens['token_basic']['p99_ms']:.1f} ms) vs GET /healthz"
        f" {tokens['healthz']['median']:,.0f} req/s on the same server ({ratio:.2f}x)"
    )
    print(
        f"GET /v1/apps, tenant with {result['apps']:,} apps with usage,"
        f" stats from {result['stats_source']}:"
    )
    for name, figures in result["list_latency"].items():
        print(f"  {name:<33} p50 {figures['p50_ms']:7.1f} ms   p95 {figures['p95_ms']:7.1f} ms")
