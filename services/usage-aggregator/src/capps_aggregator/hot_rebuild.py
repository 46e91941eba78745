"""Rebuilds the hot Redis counters from PostgreSQL when Redis lost data.

Redis holds a completeness marker (`capps:usage:ready`). When it is missing (Redis restarted
without its data, FLUSHDB) the write script refuses to count, and one worker, holding a lock,
rebuilds: it deletes every usage key, copies the minute counters of the hours Redis keeps,
the day counters of the days it keeps, last seen and the watermarks, all read in ONE
PostgreSQL snapshot, and sets the marker last. Counters and watermarks then agree exactly:
a writer resumes from the copied watermarks and re-rolls what PostgreSQL had not counted yet.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as redis

from capps_usage.keys import (
    DAY_RETENTION_DAYS,
    HOT_READY_KEY,
    HOUR_TOTAL_FIELD,
    MINUTE_TTL_S,
    OFFSETS_KEY,
    day_field,
    day_key,
    hour_key_at,
    offset_field,
    seen_key,
)

log = logging.getLogger(__name__)

REBUILD_LOCK_KEY = "capps:usage-rebuild:lock"  # outside the capps:usage:* pattern it deletes
LOCK_TTL_MS = 30_000
WAIT_POLL_S = 0.25
PIPELINE_ROWS = 5_000
PROGRESS_EVERY_S = 1.0

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_MINUTES = """
SELECT app_id, (extract(epoch FROM minute)::bigint / 60)::bigint AS m, requests
FROM usage_minute WHERE minute >= to_timestamp($1) ORDER BY app_id, minute
"""
_DAYS = """
SELECT app_id, day, requests FROM usage_day WHERE day >= $1 ORDER BY app_id, day
"""
_SEEN = "SELECT app_id, last_seen FROM app_last_seen"
_OFFSETS = "SELECT topic, partition, next_offset FROM usage_offsets"

Progress = Callable[[str], None]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WATCH_EVERY_S = 5.0


class HotStoreRebuilder:
    """Makes Redis complete again from PostgreSQL; safe to call from many workers at once."""

    def __init__(
        self,
        pool: "asyncpg.Pool[asyncpg.Record]",
        client: "redis.Redis",
        progress: Progress | None = None,
    ) -> None:
        self._pool = pool
        self._client = client
        self._progress = progress
        self._release = client.register_script(_RELEASE_LUA)
        self._extend = client.register_script(_EXTEND_LUA)

    async def ready(self) -> bool:
        """Whether the completeness marker is set."""
        return bool(await self._client.exists(HOT_READY_KEY))

    async def rebuild(self, *, stale: bool = False) -> None:
        """Return once the marker is set: rebuilt here, or by whichever worker holds the lock."""
        if stale:
            await self._client.delete(HOT_READY_KEY)
        while not await self.ready():
            token = uuid.uuid4().hex
            if await self._client.set(REBUILD_LOCK_KEY, token, nx=True, px=LOCK_TTL_MS):
                try:
                    if not await self.ready():
                        await self._rebuild_holding(token)
                finally:
                    await self._release(keys=[REBUILD_LOCK_KEY], args=[token])
                return
            await asyncio.sleep(WAIT_POLL_S)

    async def watch(self) -> None:
        """Rebuild whenever the marker goes missing, even while no event arrives to notice."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            try:
                if not await self.ready():
                    log.warning("the hot store lost its data; rebuilding it from PostgreSQL")
                    await self.rebuild()
            except (
                OSError,
                redis.ConnectionError,
                redis.TimeoutError,
                asyncpg.PostgresError,
            ) as exc:
                # An outage: the writer retries on its own; look again next round.
                log.warning("hot store check failed", extra={"error": repr(exc)})

    async def _rebuild_holding(self, token: str) -> None:
        keeper = asyncio.create_task(self._keep_lock(token))
        try:
            started = time.monotonic()
            removed = await self._clear()
            counts = await self._copy()
            await self._client.set(HOT_READY_KEY, datetime.now(UTC).isoformat())
            log.warning(
                "hot store rebuilt from PostgreSQL",
                extra={"removed_keys": removed, **counts, "seconds": time.monotonic() - started},
            )
            self._say(f"done: {_summary(counts)} in {time.monotonic() - started:.1f} s")
        finally:
            keeper.cancel()

    async def _keep_lock(self, token: str) -> None:
        while True:
            await asyncio.sleep(LOCK_TTL_MS / 3000)
            await self._extend(keys=[REBUILD_LOCK_KEY], args=[token, LOCK_TTL_MS])

    async def _clear(self) -> int:
        removed = 0
        batch: list[bytes] = []
        async for key in self._client.scan_iter(match="capps:usage:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += await self._client.unlink(*batch)
                batch = []
        if batch:
            removed += await self._client.unlink(*batch)
        self._say(f"cleared {removed} keys")
        return removed

    async def _copy(self) -> dict[str, int]:
        now_s = time.time()
        today = datetime.fromtimestamp(now_s, UTC).date()
        first_day = today - timedelta(days=DAY_RETENTION_DAYS - 1)
        counts = {"minute_rows": 0, "day_rows": 0, "apps_seen": 0, "watermarks": 0}
        last_said = time.monotonic()
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            pipe = self._client.pipeline(transaction=False)
            pending = 0

            async def flush(*, force: bool = False) -> None:
                nonlocal pipe, pending, last_said
                if pending and (force or pending >= PIPELINE_ROWS):
                    await pipe.execute()
                    pipe = self._client.pipeline(transaction=False)
                    pending = 0
                if time.monotonic() - last_said >= PROGRESS_EVERY_S:
                    last_said = time.monotonic()
                    self._say(f"copying: {_summary(counts)}")

            async for row in connection.cursor(_MINUTES, now_s - MINUTE_TTL_S - 3600):
                minute = int(row["m"])
                hour = minute // 60
                expire_at = hour * 3600 + MINUTE_TTL_S
                if expire_at <= now_s:
                    continue
                key = hour_key_at(row["app_id"], hour)
                pipe.hset(key, f"{minute % 60:02d}", int(row["requests"]))
                # The store was cleared first, so adding up the hour's total is exact.
                pipe.hincrby(key, HOUR_TOTAL_FIELD, int(row["requests"]))
                pipe.expireat(key, expire_at)
                counts["minute_rows"] += 1
                pending += 1
                await flush()
            async for row in connection.cursor(_DAYS, first_day):
                pipe.hset(day_key(row["app_id"]), day_field(row["day"]), int(row["requests"]))
                counts["day_rows"] += 1
                pending += 1
                await flush()
            async for row in connection.cursor(_SEEN):
                seen: datetime = row["last_seen"]
                pipe.set(seen_key(row["app_id"]), (seen - EPOCH) // timedelta(milliseconds=1))
                counts["apps_seen"] += 1
                pending += 1
                await flush()
            for row in await connection.fetch(_OFFSETS):
                field = offset_field(row["topic"], int(row["partition"]))
                pipe.hset(OFFSETS_KEY, field, int(row["next_offset"]))
                counts["watermarks"] += 1
                pending += 1
            await flush(force=True)
        return counts

    def _say(self, line: str) -> None:
        if self._progress is not None:
            self._progress(f"rebuild-redis: {line}")


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in counts.items())
