"""The Connected applications page: server-side render time of a 1,000-app list with stats.

Seeds a tenant of its own with 1,000 apps and 30 days of usage in the stack's PostgreSQL and
Redis (the same numbers in both stores, in the layout of capps_usage), then serves the
registry app in-process (no network, so the figure is the server's own time) and times,
interleaved round by round:
- `GET /v1/apps`, the admin API's JSON list of the same apps (baseline: reading, no HTML);
- `GET /` the page's default view (50 rows of 1,000);
- `GET /?size=1000`, all 1,000 rows with their sparklines in one page.
Everything seeded is removed afterwards.
"""

import os
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.progress import say
from capps_registry.app import build_api
from capps_registry.apps import repository
from capps_registry.db import set_tenant, tenant_transaction
from capps_registry.settings import RegistrySettings
from capps_registry.state import STATE_KEY, RegistryState
from capps_registry.tenants.service import create_tenant
from capps_usage.keys import (
    day_field,
    day_key,
    hour_key,
    minute_field,
    minute_floor,
    seen_key,
    trailing_hours,
    trend_days,
)

APPS = 1000
BASE_URL = "http://registry.bench"
TARGET_P95_MS = 100.0
SEED_TTL_S = 3600
SEED_HOURS = 3


@dataclass(frozen=True, slots=True)
class PageTimings:
    """Milliseconds per request of each target, all taken in the same interleaved rounds."""

    api_list_ms: list[float]
    page_default_ms: list[float]
    page_all_ms: list[float]


async def _seed_apps(state: RegistryState, tenant_id: str) -> list[str]:
    """1,000 apps stored directly (no outbox: they are never published to gateways)."""
    ids = []
    async with tenant_transaction(state.pool, tenant_id) as conn:
        for number in range(APPS):
            client = await repository.insert_client(
                conn,
                client_id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                kind="app",
                name=f"Partner app {number:04d}",
                description="seeded by bench/page.py",
                permissions=["Alert.Read.All"],
                per_minute=100,
                per_hour=1500,
            )
            ids.append(client.id)
    return ids


async def _seed_usage(
    state: RegistryState, tenant_id: str, app_ids: list[str], now: datetime
) -> None:
    """30 days of day counts, the last hours' minute counts and last seen, per app.

    The same numbers go to Redis (hot) and PostgreSQL (the system of record), so the page
    reads real-looking stats whichever store the read model answers from.
    """
    chooser = random.Random(7)
    pipe = state.redis.pipeline(transaction=False)
    days = trend_days(now)
    day_rows, minute_rows, seen_rows = [], [], []
    for app_id in app_ids:
        counts = {day: chooser.randint(0, 5000) for day in days}
        pipe.hset(day_key(app_id), mapping={day_field(d): n for d, n in counts.items()})
        pipe.expire(day_key(app_id), SEED_TTL_S)
        day_rows += [(app_id, tenant_id, day, n) for day, n in counts.items()]
        for back in range(0, SEED_HOURS * 60, 7):
            minute = minute_floor(now - timedelta(minutes=back))
            calls = chooser.randint(1, 90)
            pipe.hset(hour_key(app_id, minute), minute_field(minute), calls)
            pipe.expire(hour_key(app_id, minute), SEED_TTL_S)
            minute_rows.append((app_id, tenant_id, minute, calls))
        seen = now - timedelta(seconds=chooser.randint(0, 86_400))
        pipe.set(seen_key(app_id), int(seen.timestamp() * 1000), ex=SEED_TTL_S)
        seen_rows.append((app_id, tenant_id, seen))
    await pipe.execute()
    async with state.pool.acquire() as conn, conn.transaction():
        columns = ["app_id", "tenant_id"]
        await conn.copy_records_to_table(
            "usage_day", records=day_rows, columns=[*columns, "day", "requests"]
        )
        await conn.copy_records_to_table(
            "usage_minute", records=minute_rows, columns=[*columns, "minute", "requests"]
        )
        await conn.copy_records_to_table(
            "app_last_seen", records=seen_rows, columns=[*columns, "last_seen"]
        )


async def _remove(state: RegistryState, tenant_id: str, app_ids: list[str]) -> None:
    """Delete the seeded tenant (its clients and secrets cascade) and its usage keys."""
    hours = trailing_hours(datetime.now(UTC), SEED_HOURS + 1)
    keys = [
        key
        for app_id in app_ids
        for key in (day_key(app_id), seen_key(app_id), *(hour_key(app_id, h) for h in hours))
    ]
    for start in range(0, len(keys), 500):
        await state.redis.delete(*keys[start : start + 500])
    async with state.pool.acquire() as conn, conn.transaction():
        for table in ("usage_day", "usage_minute", "app_last_seen"):
            await conn.execute(f"DELETE FROM {table} WHERE tenant_id = $1", tenant_id)
        # Row-level security shows the tenant's row only to a transaction acting for it.
        await set_tenant(conn, tenant_id)
        await conn.execute("DELETE FROM tenants WHERE id = $1", tenant_id)


@asynccontextmanager
async def _served(
    settings: RegistrySettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, RegistryState]]:
    """The registry app inside its lifespan, reached in-process through httpx's ASGI transport."""
    app = build_api(settings)
    async with app.router.lifespan_context(app) as lifespan_state:
        assert lifespan_state is not None

        async def served(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                scope["state"] = dict(lifespan_state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client, lifespan_state[STATE_KEY]


async def _sign_in(client: httpx.AsyncClient, client_id: str, secret: str) -> None:
    form_page = await client.get("/signin")
    csrf = form_page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = await client.post(
        "/signin", data={"client_id": client_id, "client_secret": secret, "csrf_token": csrf}
    )
    assert answer.status_code == 303, answer.text


async def measure_page(rounds: int, secrets_file: Path) -> PageTimings:
    """Seed, time each target once per round in rotating order, clean up.

    `secrets_file` is the stack's generated secrets (the signing keys' encryption key).
    """
    settings = RegistrySettings(
        _env_file=secrets_file,  # type: ignore[call-arg]
        database_url=os.environ["DATABASE_URL"],
        redis_url=os.environ["REDIS_URL"],
        kafka_bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        registry_outbox_relay=False,
    )
    async with _served(settings) as (client, state):
        tenant = await create_tenant(
            state.pool, state.settings.pepper, f"bench-page-{uuid.uuid4().hex[:8]}"
        )
        say(f"seeding {APPS:,} apps with 30 days of usage for tenant {tenant.tenant_id}")
        app_ids = await _seed_apps(state, tenant.tenant_id)
        try:
            await _seed_usage(state, tenant.tenant_id, app_ids, datetime.now(UTC))
            token = (
                await client.post(
                    "/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(tenant.client_id, tenant.client_secret),
                )
            ).json()["access_token"]
            await _sign_in(client, tenant.client_id, tenant.client_secret)
            targets: list[tuple[str, Callable[[], Any]]] = [
                (
                    "api",
                    lambda: client.get("/v1/apps", headers={"Authorization": f"Bearer {token}"}),
                ),
                ("default", lambda: client.get("/")),
                ("all", lambda: client.get("/?size=1000")),
            ]
            timings: dict[str, list[float]] = {name: [] for name, _ in targets}
            for name, request in targets:  # warm up once: templates compile, pools fill
                answer = await request()
                assert answer.status_code == 200, f"{name}: {answer.status_code}"
            for number in range(rounds):
                shift = number % len(targets)
                for name, request in targets[shift:] + targets[:shift]:
                    started = time.perf_counter()
                    answer = await request()
                    timings[name].append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 200, f"{name}: {answer.status_code}"
            rows = answer_rows(await client.get("/?size=1000"))
            assert rows == APPS, f"the full page shows {rows} rows, not {APPS}"
        finally:
            await _remove(state, tenant.tenant_id, app_ids)
    return PageTimings(timings["api"], timings["default"], timings["all"])


def answer_rows(answer: httpx.Response) -> int:
    """How many app rows a list page holds."""
    return answer.text.count("<tr data-app-id=")


def summary(timings: PageTimings) -> dict[str, Any]:
    """p50/p95 of each target, the target figure, and the samples."""

    def stats(samples: list[float]) -> dict[str, Any]:
        ordered = sorted(samples)
        p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94]
        return {"p50": statistics.median(ordered), "p95": p95, "samples": samples}

    return {
        "apps": APPS,
        "target_p95_ms": TARGET_P95_MS,
        "api_list_json": stats(timings.api_list_ms),
        "page_default_50_rows": stats(timings.page_default_ms),
        "page_all_1000_rows": stats(timings.page_all_ms),
    }


def print_summary(figures: dict[str, Any]) -> None:
    """The lines a person reads."""
    print(f"\npage, {figures['apps']:,} apps with stats, server-side (in-process) ms:")
    for key, words in (
        ("api_list_json", "GET /v1/apps (JSON, baseline)"),
        ("page_default_50_rows", "GET / (page, 50 rows)"),
        ("page_all_1000_rows", "GET /?size=1000 (page, all rows)"),
    ):
        entry = figures[key]
        print(f"  {words:<36} p50 {entry['p50']:7.1f}  p95 {entry['p95']:7.1f}")
    print(f"  target: p95 <= {figures['target_p95_ms']:.0f} ms")
