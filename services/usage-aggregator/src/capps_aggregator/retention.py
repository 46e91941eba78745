"""Retention: minute rows older than USAGE_MINUTE_RETENTION_DAYS, day and route rows older than
USAGE_DAY_RETENTION_DAYS go away in small batches.

Batched deletes rather than partitions: measured in the service README (a day of minute rows
deleted in batches costs seconds in the background, while partitioning would need the
primary key to include the partition key and a partition manager for little gain at this
size). Small batches keep each transaction short, so counting never waits long on a lock.
An advisory lock lets one worker of the group do it at a time.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from capps_aggregator import metrics

log = logging.getLogger(__name__)

# Any constant shared by the workers; pg_try_advisory_lock takes a bigint.
RETENTION_LOCK_ID = 0x63617070735F7265  # "capps_re"
DELETE_BATCH_ROWS = 5_000

_DELETES = {
    "usage_minute": (
        "DELETE FROM usage_minute WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM usage_minute WHERE minute < $1 LIMIT $2))"
    ),
    "usage_day": (
        "DELETE FROM usage_day WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM usage_day WHERE day < $1 LIMIT $2))"
    ),
    "usage_route_day": (
        "DELETE FROM usage_route_day WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM usage_route_day WHERE day < $1 LIMIT $2))"
    ),
}


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows strictly before these are deleted."""

    minute: datetime
    day: date

    @classmethod
    def at(cls, now: datetime, minute_days: int, day_days: int) -> "Cutoffs":
        """The cutoffs at `now`: whole UTC days back, so a day is kept whole or not at all."""
        today = now.astimezone(UTC).date()
        first_minute_day = today - timedelta(days=minute_days - 1)
        return cls(
            minute=datetime(
                first_minute_day.year, first_minute_day.month, first_minute_day.day, tzinfo=UTC
            ),
            day=today - timedelta(days=day_days - 1),
        )


class UsageRetention:
    """Deletes expired usage rows; safe to run from every worker (one at a time runs)."""

    def __init__(
        self,
        pool: "asyncpg.Pool[asyncpg.Record]",
        minute_days: int,
        day_days: int,
        batch_rows: int = DELETE_BATCH_ROWS,
    ) -> None:
        self._pool = pool
        self._minute_days = minute_days
        self._day_days = day_days
        self._batch_rows = batch_rows

    async def run_once(self, now: datetime | None = None) -> dict[str, int] | None:
        """Delete what expired at `now`; the rows deleted per table, None if another worker
        holds the lock."""
        cutoffs = Cutoffs.at(now or datetime.now(UTC), self._minute_days, self._day_days)
        async with self._pool.acquire() as connection:
            if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK_ID):
                return None
            try:
                deleted = {
                    "usage_minute": await self._drain(connection, "usage_minute", cutoffs.minute),
                    "usage_day": await self._drain(connection, "usage_day", cutoffs.day),
                    "usage_route_day": await self._drain(
                        connection, "usage_route_day", cutoffs.day
                    ),
                }
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK_ID)
        if any(deleted.values()):
            log.info("expired usage rows deleted", extra=deleted)
        return deleted

    async def _drain(
        self, connection: "asyncpg.Connection[asyncpg.Record]", table: str, cutoff: object
    ) -> int:
        total = 0
        while True:
            started = time.perf_counter()
            status = await connection.execute(_DELETES[table], cutoff, self._batch_rows)
            count = int(status.split()[-1])
            metrics.RETENTION_DELETED.labels(table).inc(count)
            metrics.RETENTION_SECONDS.observe(time.perf_counter() - started)
            total += count
            if count < self._batch_rows:
                return total
            await asyncio.sleep(0)  # let the counting go first between batches

    async def run_every(self, every_s: float) -> None:
        """Run now and then every `every_s` seconds; an outage just skips a round."""
        while True:
            try:
                await self.run_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "retention round failed; next round retries", extra={"error": repr(exc)}
                )
            await asyncio.sleep(every_s)
