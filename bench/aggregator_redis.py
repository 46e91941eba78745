"""Redis bytes per active app-minute, written by the real path: Kafka -> worker -> Redis.

Two populations of apps over the last HOURS hours, one event per active app-minute:
- dense: DENSE_APPS apps active every minute;
- sparse: SPARSE_APPS apps active in one minute out of SPARSE_EVERY (the density of the
  series seed), where each hour hash holds few fields and its key costs more per minute.
One worker counts them into the bench's Redis database; then every key of each population
(hour hashes of minutes, the day hash, last seen) is measured with MEMORY USAGE and divided by
its app-minutes. Redis's INFO used_memory before and after is given beside it (the whole
server, so it includes the worker's watermarks and anything else that moved meanwhile).
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.aggregator import Scratch, Servers, produce, scratch, worker_rate
from bench.progress import say
from capps_events import RequestEvent
from capps_events.testing import request_event
from capps_kit.postgres import asyncpg_dsn
from capps_kit.redis import create_redis

HOURS = 2
DENSE_APPS = 500
SPARSE_APPS = 5_000
SPARSE_EVERY = 10


def _events(made: Scratch, now: datetime) -> tuple[int, Any]:
    """How many events, and event i: one per active app-minute of both populations."""
    dense = DENSE_APPS * HOURS * 60
    per_minute_sparse = SPARSE_APPS // SPARSE_EVERY

    def event_of(index: int) -> RequestEvent:
        if index < dense:
            minute, slot = divmod(index, DENSE_APPS)
            app = f"bench-{made.run}-d-{slot}"
        else:
            minute, slot = divmod(index - dense, per_minute_sparse)
            # Minute m's active sparse apps: those with number = m (mod SPARSE_EVERY).
            app = f"bench-{made.run}-s-{slot * SPARSE_EVERY + minute % SPARSE_EVERY}"
        return request_event(
            time=now - timedelta(minutes=minute, seconds=1),
            tenant_id="bench",
            app_id=app,
            request_id=str(index),
            gateway="bench",
        )

    return dense + per_minute_sparse * HOURS * 60, event_of


async def _memory(made: Scratch, population: str) -> tuple[int, int]:
    """(bytes by MEMORY USAGE, keys) of one population's keys."""
    hot = create_redis(made.redis_url)
    total = keys = 0
    try:
        async for key in hot.scan_iter(match=f"capps:usage:bench-{made.run}-{population}-*"):
            total += int(await hot.memory_usage(key, samples=0) or 0)
            keys += 1
    finally:
        await hot.aclose()
    return total, keys


async def _used_memory(made: Scratch) -> int:
    hot = create_redis(made.redis_url)
    try:
        return int((await hot.info("memory"))["used_memory"])
    finally:
        await hot.aclose()


async def measure_redis_bytes(servers: Servers, workdir: Path) -> dict[str, Any]:
    """Count the two populations through one worker; bytes per app-minute of each."""
    async with scratch(servers) as made:
        count, event_of = _events(made, datetime.now(UTC))
        before = await _used_memory(made)
        await produce(made, count, DENSE_APPS + SPARSE_APPS, event_of)
        await worker_rate(
            made.worker_env(),
            asyncpg_dsn(made.database_url),
            count,
            workdir / "aggregator-redis-worker.log",
        )
        after = await _used_memory(made)
        dense_bytes, dense_keys = await _memory(made, "d")
        sparse_bytes, sparse_keys = await _memory(made, "s")
    dense_minutes = DENSE_APPS * HOURS * 60
    sparse_minutes = count - dense_minutes
    found = {
        "redis_bytes_per_app_minute_dense": dense_bytes / dense_minutes,
        "redis_bytes_per_app_minute_sparse": sparse_bytes / sparse_minutes,
        "redis_bytes_per_app_minute_info": (after - before) / count,
        "redis_app_minutes": count,
        "redis_keys": dense_keys + sparse_keys,
        "redis_shape": (
            f"{DENSE_APPS} apps every minute and {SPARSE_APPS:,} apps 1 minute in"
            f" {SPARSE_EVERY}, over {HOURS} h"
        ),
    }
    say(
        f"redis: {found['redis_bytes_per_app_minute_dense']:.1f} bytes per app-minute (apps"
        f" active every minute), {found['redis_bytes_per_app_minute_sparse']:.1f} (1 minute in"
        f" {SPARSE_EVERY}); INFO used_memory delta {found['redis_bytes_per_app_minute_info']:.1f}"
        f" over {count:,} app-minutes"
    )
    return found
