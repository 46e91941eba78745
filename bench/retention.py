"""Retention by batched deletes vs by dropping day partitions, measured on the same rows.

`python -m bench.retention [APPS]` (stack up, `.local/stack.env` exported): a scratch database
gets three days of minute rows for APPS apps (default 2,000: 8.6 M rows) twice, once in the
plain table the aggregator uses (BRIN on minute) and once partitioned by day; it times
deleting the oldest day in 5,000-row batches against DROP of its partition, and one
upsert batch of 10,000 pre-aggregated rows into each. Prints a table; drops the database.
"""

import asyncio
import os
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.progress import say
from capps_kit.postgres import asyncpg_dsn

DAYS = 3
BATCH = 5_000
UPSERT_ROWS = 10_000

_PLAIN = """
CREATE TABLE m_plain (app_id text NOT NULL, minute timestamptz NOT NULL, requests bigint NOT NULL,
  PRIMARY KEY (app_id, minute));
CREATE INDEX ON m_plain USING brin (minute);
"""
_PARTITIONED = """
CREATE TABLE m_part (app_id text NOT NULL, minute timestamptz NOT NULL, requests bigint NOT NULL,
  PRIMARY KEY (app_id, minute)) PARTITION BY RANGE (minute);
"""
_FILL = """
INSERT INTO {table} SELECT 'app-' || a, timestamptz '2026-01-01' + m * interval '1 minute', 1
FROM generate_series(0, {apps} - 1) a, generate_series(0, {minutes} - 1) m
"""
_UPSERT = """
INSERT INTO {table} AS t SELECT 'app-' || a, timestamptz '2026-01-03 12:00' , 1
FROM generate_series(0, {rows} - 1) a
ON CONFLICT (app_id, minute) DO UPDATE SET requests = t.requests + 1
"""
_DELETE = """
DELETE FROM m_plain WHERE ctid = ANY(ARRAY(
  SELECT ctid FROM m_plain WHERE minute < timestamptz '2026-01-02' LIMIT $1))
"""


async def measure(database_url: str, apps: int) -> list[tuple[str, str]]:
    """Run the comparison in a scratch database; return (what, figure) rows."""
    name = f"capps_retention_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    connection = await asyncpg.connect(asyncpg_dsn(url))
    rows: list[tuple[str, str]] = []
    try:
        await connection.execute(_PLAIN + _PARTITIONED)
        for day in range(DAYS):
            await connection.execute(
                f"CREATE TABLE m_part_{day} PARTITION OF m_part FOR VALUES FROM "
                f"(timestamptz '2026-01-01' + interval '{day} days') TO "
                f"(timestamptz '2026-01-01' + interval '{day + 1} days')"
            )
        minutes = DAYS * 1440
        for table in ("m_plain", "m_part"):
            say(f"retention bench: filling {table} with {apps * minutes:,} rows")
            await connection.execute(_FILL.format(table=table, apps=apps, minutes=minutes))
        await connection.execute("VACUUM ANALYZE m_plain")
        await connection.execute("VACUUM ANALYZE m_part")
        for table in ("m_plain", "m_part"):
            started = time.perf_counter()
            await connection.execute(_UPSERT.format(table=table, rows=min(apps, UPSERT_ROWS)))
            rows.append((f"upsert {min(apps, UPSERT_ROWS):,} rows into {table}", _ms(started)))
        say("retention bench: deleting the oldest day in batches")
        started = time.perf_counter()
        slowest = 0.0
        deleted = 0
        while True:
            batch_started = time.perf_counter()
            count = int((await connection.execute(_DELETE, BATCH)).split()[-1])
            slowest = max(slowest, time.perf_counter() - batch_started)
            deleted += count
            if count < BATCH:
                break
        rows.append((f"batched DELETE of one day ({deleted:,} rows)", _ms(started)))
        rows.append((f"  slowest {BATCH:,}-row batch", f"{slowest * 1000:.1f} ms"))
        started = time.perf_counter()
        await connection.execute("DROP TABLE m_part_0")
        rows.append(("DROP of one day partition", _ms(started)))
    finally:
        await connection.close()
        await _drop(admin, name)
        await admin.close()
    return rows


async def _drop(admin: "asyncpg.Connection[asyncpg.Record]", name: str) -> None:
    # An autovacuum worker in the database makes FORCE refuse for a moment: try again.
    for attempt in range(50):
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)
        else:
            return


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:,.0f} ms"


def main() -> None:
    """Print the comparison table."""
    apps = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    rows = asyncio.run(measure(os.environ["DATABASE_URL"], apps))
    width = max(len(what) for what, _ in rows)
    for what, figure in rows:
        print(f"{what:<{width}}  {figure:>12}")


if __name__ == "__main__":
    main()
