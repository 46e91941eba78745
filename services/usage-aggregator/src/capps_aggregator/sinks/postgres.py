"""Applies batches to the PostgreSQL usage tables, counters and watermarks in one transaction."""

from collections.abc import Sequence

import asyncpg

from capps_aggregator.rollup import PositionedEvent, UsageRollup, rollup

_LOCK_WATERMARKS = """
INSERT INTO usage_offsets (topic, partition, next_offset)
SELECT $1, p, 0 FROM unnest($2::integer[]) AS p
ON CONFLICT (topic, partition) DO NOTHING
"""
_READ_WATERMARKS = """
SELECT partition, next_offset FROM usage_offsets
WHERE topic = $1 AND partition = ANY($2::integer[])
"""
_UPSERT_MINUTES = """
INSERT INTO usage_minute AS t (app_id, tenant_id, minute, requests)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[])
ON CONFLICT (app_id, minute) DO UPDATE SET requests = t.requests + EXCLUDED.requests
"""
_UPSERT_DAYS = """
INSERT INTO usage_day AS t (app_id, tenant_id, day, requests)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[])
ON CONFLICT (app_id, day) DO UPDATE SET requests = t.requests + EXCLUDED.requests
"""
_UPSERT_LAST_SEEN = """
INSERT INTO app_last_seen AS t (app_id, tenant_id, last_seen)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
ON CONFLICT (app_id) DO UPDATE
SET last_seen = GREATEST(t.last_seen, EXCLUDED.last_seen), tenant_id = EXCLUDED.tenant_id
"""
_ADVANCE_WATERMARKS = """
UPDATE usage_offsets AS t SET next_offset = GREATEST(t.next_offset, v.next_offset)
FROM unnest($2::integer[], $3::bigint[]) AS v (partition, next_offset)
WHERE t.topic = $1 AND t.partition = v.partition
"""


class PostgresUsageSink:
    """The system of record: what it committed is counted, exactly once."""

    def __init__(self, pool: "asyncpg.Pool[asyncpg.Record]", topic: str) -> None:
        self._pool = pool
        self._topic = topic

    async def watermarks(self, partitions: Sequence[int]) -> dict[int, int]:
        """The next offset to apply of each partition (0 when none was applied yet)."""
        rows = await self._pool.fetch(_READ_WATERMARKS, self._topic, list(partitions))
        found = {int(row["partition"]): int(row["next_offset"]) for row in rows}
        return {partition: found.get(partition, 0) for partition in partitions}

    async def apply(self, events: Sequence[PositionedEvent]) -> UsageRollup:
        """Count the events above the stored watermarks and advance them, atomically.

        The watermark rows are locked first (created when missing, so even a partition's first
        batch is serialised), which makes two writers of one partition, as during a rebalance,
        apply each offset once.
        """
        partitions = sorted({item.partition for item in events})
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(_LOCK_WATERMARKS, self._topic, partitions)
            rows = await connection.fetch(
                _READ_WATERMARKS + " ORDER BY partition FOR UPDATE", self._topic, partitions
            )
            stored = {int(row["partition"]): int(row["next_offset"]) for row in rows}
            counters = rollup(events, stored)
            if counters.empty:
                return counters
            await _write_counters(connection, counters)
            ordered = sorted(counters.next_offsets.items())
            await connection.execute(
                _ADVANCE_WATERMARKS,
                self._topic,
                [partition for partition, _ in ordered],
                [offset for _, offset in ordered],
            )
        return counters


async def _write_counters(
    connection: "asyncpg.Connection[asyncpg.Record]", counters: UsageRollup
) -> None:
    # Keys are sorted so two writers touching the same rows lock them in the same order.
    tenants = counters.tenants
    if counters.minutes:
        minute_keys = sorted(counters.minutes)
        await connection.execute(
            _UPSERT_MINUTES,
            [app for app, _ in minute_keys],
            [tenants[app] for app, _ in minute_keys],
            [minute for _, minute in minute_keys],
            [counters.minutes[key] for key in minute_keys],
        )
    if counters.days:
        day_keys = sorted(counters.days)
        await connection.execute(
            _UPSERT_DAYS,
            [app for app, _ in day_keys],
            [tenants[app] for app, _ in day_keys],
            [day for _, day in day_keys],
            [counters.days[key] for key in day_keys],
        )
    if counters.last_seen:
        apps = sorted(counters.last_seen)
        await connection.execute(
            _UPSERT_LAST_SEEN,
            apps,
            [tenants[app] for app in apps],
            [counters.last_seen[app] for app in apps],
        )
