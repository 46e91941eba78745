"""Applies batches to the PostgreSQL usage tables, counters and watermarks in one transaction.

Counters arrive pre-aggregated (one row per app and minute, day, route), so each table gets
one set-based upsert of unnested arrays; buckets travel as integers and become timestamps and
dates inside PostgreSQL, which spares Python a datetime per row.
"""

from collections.abc import Sequence

import asyncpg

from capps_aggregator.rollup import COUNTER_COLUMNS, RolledPartition, UsageRollup, merge

_LOCK_WATERMARKS = """
INSERT INTO usage_offsets (topic, partition, next_offset)
SELECT $1, p, 0 FROM unnest($2::integer[]) AS p
ON CONFLICT (topic, partition) DO NOTHING
"""
_READ_WATERMARKS = """
SELECT partition, next_offset FROM usage_offsets
WHERE topic = $1 AND partition = ANY($2::integer[])
"""
_COUNTERS = ", ".join(COUNTER_COLUMNS)
_ADD_COUNTERS = ", ".join(
    f"{name} = t.{name} + EXCLUDED.{name}" for name in COUNTER_COLUMNS if name != "latency_ms_max"
)
_COUNTER_ARRAYS = ", ".join(
    f"${index}::{'double precision' if name.startswith('latency') else 'bigint'}[]"
    for index, name in enumerate(COUNTER_COLUMNS, start=4)
)
# Column names come from COUNTER_COLUMNS, never from input.
_UPSERT_MINUTES = f"""
INSERT INTO usage_minute AS t (app_id, tenant_id, minute, {_COUNTERS})
SELECT app, tenant, to_timestamp(m * 60), {_COUNTERS}
FROM unnest($1::text[], $2::text[], $3::bigint[], {_COUNTER_ARRAYS})
     AS v (app, tenant, m, {_COUNTERS})
ON CONFLICT (app_id, minute) DO UPDATE SET {_ADD_COUNTERS},
    latency_ms_max = GREATEST(t.latency_ms_max, EXCLUDED.latency_ms_max)
"""  # noqa: S608
_HIST_ARG = len(COUNTER_COLUMNS) + 4
_UPSERT_DAYS = f"""
INSERT INTO usage_day AS t (app_id, tenant_id, day, {_COUNTERS}, latency_hist)
SELECT app, tenant, DATE '1970-01-01' + d, {_COUNTERS}, hist::bigint[]
FROM unnest($1::text[], $2::text[], $3::integer[], {_COUNTER_ARRAYS}, ${_HIST_ARG}::text[])
     AS v (app, tenant, d, {_COUNTERS}, hist)
ON CONFLICT (app_id, day) DO UPDATE SET {_ADD_COUNTERS},
    latency_ms_max = GREATEST(t.latency_ms_max, EXCLUDED.latency_ms_max),
    latency_hist = ARRAY(
        SELECT coalesce(a, 0) + coalesce(b, 0)
        FROM unnest(t.latency_hist, EXCLUDED.latency_hist) WITH ORDINALITY AS h (a, b, n)
        ORDER BY n
    )
"""  # noqa: S608
_UPSERT_ROUTES = """
INSERT INTO usage_route_day AS t (app_id, tenant_id, day, method, route, requests, errors)
SELECT app, tenant, DATE '1970-01-01' + d, method, route, requests, errors
FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::bigint[],
            $7::bigint[]) AS v (app, tenant, d, method, route, requests, errors)
ON CONFLICT (app_id, day, method, route) DO UPDATE
SET requests = t.requests + EXCLUDED.requests, errors = t.errors + EXCLUDED.errors
"""
_UPSERT_LAST_SEEN = """
INSERT INTO app_last_seen AS t (app_id, tenant_id, last_seen)
SELECT app, tenant, to_timestamp(s)
FROM unnest($1::text[], $2::text[], $3::double precision[]) AS v (app, tenant, s)
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

    @property
    def topic(self) -> str:
        """The requests topic whose watermarks this sink keeps."""
        return self._topic

    async def watermarks(self, partitions: Sequence[int]) -> dict[int, int]:
        """The next offset to apply of each partition (0 when none was applied yet)."""
        rows = await self._pool.fetch(_READ_WATERMARKS, self._topic, list(partitions))
        found = {int(row["partition"]): int(row["next_offset"]) for row in rows}
        return {partition: found.get(partition, 0) for partition in partitions}

    async def apply(self, parts: Sequence[RolledPartition]) -> UsageRollup:
        """Count the records above the stored watermarks and advance them, atomically.

        The watermark rows are locked first (created when missing, so even a partition's first
        batch is serialised), which makes two writers of one partition, as during a rebalance,
        apply each offset once.
        """
        partitions = sorted({part.batch.partition for part in parts})
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(_LOCK_WATERMARKS, self._topic, partitions)
            rows = await connection.fetch(
                _READ_WATERMARKS + " ORDER BY partition FOR UPDATE", self._topic, partitions
            )
            stored = {int(row["partition"]): int(row["next_offset"]) for row in rows}
            counters = merge(part.above(stored.get(part.batch.partition, 0)) for part in parts)
            if counters.empty:
                return counters
            await write_counters(connection, counters)
            ordered = sorted(counters.next_offsets.items())
            await connection.execute(
                _ADVANCE_WATERMARKS,
                self._topic,
                [partition for partition, _ in ordered],
                [offset for _, offset in ordered],
            )
        return counters


def _columns(rows: Sequence[list[float]]) -> list[list[float]]:
    return [[row[slot] for row in rows] for slot in range(len(COUNTER_COLUMNS))]


async def write_counters(
    connection: "asyncpg.Connection[asyncpg.Record]", counters: UsageRollup
) -> None:
    """Upsert every counter table; keys sorted so concurrent writers lock rows in one order."""
    tenants = counters.tenants
    if counters.minutes:
        keys = sorted(counters.minutes)
        await connection.execute(
            _UPSERT_MINUTES,
            [app for app, _ in keys],
            [tenants[app] for app, _ in keys],
            [minute for _, minute in keys],
            *_columns([counters.minutes[key] for key in keys]),
        )
    if counters.days:
        keys = sorted(counters.days)
        await connection.execute(
            _UPSERT_DAYS,
            [app for app, _ in keys],
            [tenants[app] for app, _ in keys],
            [day for _, day in keys],
            *_columns([counters.days[key] for key in keys]),
            ["{" + ",".join(map(str, counters.day_latency[key])) + "}" for key in keys],
        )
    if counters.routes:
        route_keys = sorted(counters.routes)
        await connection.execute(
            _UPSERT_ROUTES,
            [key[0] for key in route_keys],
            [tenants[key[0]] for key in route_keys],
            [key[1] for key in route_keys],
            [key[2] for key in route_keys],
            [key[3] for key in route_keys],
            [counters.routes[key][0] for key in route_keys],
            [counters.routes[key][1] for key in route_keys],
        )
    if counters.last_seen:
        apps = sorted(counters.last_seen)
        await connection.execute(
            _UPSERT_LAST_SEEN,
            apps,
            [tenants[app] for app in apps],
            [counters.last_seen[app] for app in apps],
        )
