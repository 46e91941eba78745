"""One app's series answered by PostgreSQL at scale: 10,000 active apps, 14 days of minutes.

The seed (a database of its own, kept between runs and reused while the usage schema and the
seed's shape are unchanged; about 22 M minute rows and 4 M day rows, 11 GB on disk;
dropped and seeded again when either changes):
- 10,000 apps with UUID ids over 100 tenants; SERIES_FULL_APPS of them (the ones queried)
  called every minute of the 14 days, every other app in one minute out of SPARSE_EVERY
  (staggered, so every minute has calls from about a tenth of the apps): 21,974,400 minute
  rows, 1,090 per minute, and 400 days of day rows (with latency histograms) per app.
- Rows go in the order the aggregator writes them, minute after minute (day after day), so
  one app's rows lie scattered over the heap exactly as in production; they are generated
  inside PostgreSQL (INSERT ... SELECT over generate_series: no row crosses the wire, cheaper
  than COPY from a client), one day per statement with a progress line, the indexes dropped
  during the load and rebuilt from their own definitions afterwards, then VACUUM ANALYZE
  (what the tables' autovacuum settings do within minutes in production).
Measured: the read model's own statements (`capps_usage.series`), one app's last 24 hours
of minutes (1,440 rows) and last 30 days, over the queried apps in a shuffled order (the first
touch of an app reads its index pages from outside PostgreSQL's buffers, and those count too),
interleaved with `SELECT 1` as the round-trip floor of this machine, all on one connection;
client CPU per fetch beside each minute figure, and for the read model's own minute statement
the time the client and its PostgreSQL backend spent waiting for a CPU during the fetch.
Beside them, in the same loop and a rotating order: the minute statement as it was
(`BEFORE_MINUTE_SQL`, the minute as a timestamptz), the same rows as one row of per-column
arrays (`ARRAYS_MINUTE_SQL`, the alternative measured). `read_series`, what the registry's
usage endpoint pays (the statement plus 1,440 `UsagePoint`s), runs on a pool of one connection
in a loop of its own after the others: its allocations bring on full garbage collections of
the whole process (counted, with their pauses), which would otherwise land in the statements'
figures.
Reference: the minute series with index-only scans disabled, i.e. reading the scattered heap
pages as the layout before the covering keys did. EXPLAIN (ANALYZE, BUFFERS) of each series is
kept in the JSON.
"""

import asyncio
import gc
import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from alembic.script import ScriptDirectory

from bench.aggregator import database_url_named
from bench.progress import say, ticking
from capps_aggregator.migrate import alembic_config, upgrade_head
from capps_kit.postgres import asyncpg_dsn
from capps_usage.series import COUNTERS, DAY_SERIES_SQL, MINUTE_SERIES_SQL, read_series

SERIES_APPS = 10_000
SERIES_FULL_APPS = 100
SPARSE_EVERY = 10
MINUTE_DAYS = 14
DAY_ROWS_DAYS = 400
QUERIES = 600
REFERENCE_QUERIES = 100
READ_SERIES_QUERIES = 300
TABLES = ("usage_minute", "usage_day")
_DB_PREFIX = "capps_agg_series_"
_VALUES = (*COUNTERS, "latency_ms_sum", "latency_ms_max")
_RANGE = " FROM usage_minute WHERE app_id = $1 AND minute >= $2 AND minute <= $3"
# References beside MINUTE_SERIES_SQL: the minute as a timestamptz (the statement before), and
# the rows aggregated into one row of per-column arrays (fewer objects, but nothing streams).
BEFORE_MINUTE_SQL = f"SELECT minute AS bucket, {', '.join(_VALUES)}{_RANGE}"
ARRAYS_MINUTE_SQL = (
    "SELECT array_agg(date_part('epoch', minute)::bigint / 60) AS bucket, "
    + ", ".join(f"array_agg({name})" for name in _VALUES)
    + _RANGE
)
_MINUTE_VARIANTS = ("minute_24h", "minute_24h_before", "minute_24h_arrays")

# Per minute m: slots j < $6 are the full apps, the other slots walk the apps active in m
# (a = m's residue + SPARSE_EVERY * k), skipping full apps; slots are in app order within m.
_SEED_MINUTE_DAY = """
INSERT INTO usage_minute (app_id, tenant_id, minute, requests, status_2xx, status_4xx, denied,
                          latency_ms_sum, latency_ms_max, bytes_in, bytes_out)
SELECT md5('series-' || a)::uuid::text, md5('tenant-' || a % 100)::uuid::text,
       $1::timestamptz - (($4 - 1 - m) * interval '1 minute'),
       r, r - (a + m) % 2, (a + m) % 2, (a + m) % 2, r * 12.5, 40, r * 300, r * 2400
FROM generate_series($2::bigint * $3, ($2::bigint + 1) * $3 - 1) AS n,
     LATERAL (SELECT n / ($3 / 1440) AS m, n % ($3 / 1440) AS j) AS k,
     LATERAL (SELECT CASE WHEN j < $6 THEN j
                          ELSE ($7 - m % $7) % $7 + $7 * (j - $6) END AS a) AS p,
     LATERAL (SELECT 1 + (a + m) % 7 AS r) AS v
WHERE j < $6 OR (a >= $6 AND a < $5)
"""
_SEED_DAYS = """
INSERT INTO usage_day (app_id, tenant_id, day, requests, status_2xx, latency_ms_sum,
                       latency_ms_max, bytes_out, latency_hist)
SELECT md5('series-' || a)::uuid::text, md5('tenant-' || a % 100)::uuid::text,
       $1::date - ($3 - 1 - d)::integer, 5000, 5000, 62500, 90, 12000000,
       array_fill((a % 50)::bigint, ARRAY[26])
FROM generate_series($2::bigint * $4, ($2::bigint + $5) * $4 - 1) AS n,
     LATERAL (SELECT n / $4 AS d, n % $4 AS a) AS k
"""


def app_id(index: int) -> str:
    """The seeded app number `index`'s id (the same md5-as-UUID PostgreSQL computes)."""
    return str(uuid.UUID(hashlib.md5(f"series-{index}".encode()).hexdigest()))


def seeded_rows() -> int:
    """Minute rows the seed writes: full apps every minute, the others one in SPARSE_EVERY."""
    minutes = MINUTE_DAYS * 1440
    return SERIES_FULL_APPS * minutes + (SERIES_APPS - SERIES_FULL_APPS) * minutes // SPARSE_EVERY


def _seed_name(database_url: str) -> str:
    """The database of this seed shape under the current usage schema: a new name per change."""
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    shape = f"{head}/{SERIES_APPS}/{SERIES_FULL_APPS}/{SPARSE_EVERY}/{MINUTE_DAYS}/{DAY_ROWS_DAYS}"
    return _DB_PREFIX + hashlib.sha256(shape.encode()).hexdigest()[:12]


async def _seeded(admin: "asyncpg.Connection[asyncpg.Record]", name: str, url: str) -> bool:
    if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        return False
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return bool(await connection.fetchval("SELECT to_regclass('bench_seed') IS NOT NULL"))
    finally:
        await connection.close()


async def prepare_seed(database_url: str) -> tuple[str, dict[str, Any]]:
    """The seeded database's URL (reused, or created now) and what its seed holds."""
    name = _seed_name(database_url)
    url = database_url_named(database_url, name)
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        if not await _seeded(admin, name, url):
            stale = await admin.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", _DB_PREFIX + "%"
            )
            for row in stale:  # an older schema's or an interrupted seed: disk back first
                say(f"series: dropping {row['datname']} (older or incomplete seed)")
                await admin.execute(f'DROP DATABASE "{row["datname"]}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            await asyncio.to_thread(upgrade_head, url)
            await _seed(url)
        else:
            say(f"series: reusing the seeded database {name}")
    finally:
        await admin.close()
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        facts = dict(await connection.fetchrow("SELECT * FROM bench_seed"))
    finally:
        await connection.close()
    return url, facts


async def _seed(url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    started = time.perf_counter()
    try:
        await connection.execute("SET synchronous_commit = off")
        # Index builds sort in memory rather than in temporary files.
        await connection.execute("SET maintenance_work_mem = '512MB'")
        end = await connection.fetchval("SELECT date_trunc('minute', now())")
        keys = await _drop_indexes(connection)
        total = seeded_rows()
        written = 0
        with ticking(
            f"series: seeding {total:,} minute rows ({SERIES_APPS:,} apps x {MINUTE_DAYS} days,"
            f" {SERIES_FULL_APPS} every minute, the rest 1 minute in {SPARSE_EVERY})",
            status=lambda: f"{written:,} rows",
        ):
            for day in range(MINUTE_DAYS):
                status = await connection.execute(
                    _SEED_MINUTE_DAY,
                    end,
                    day,
                    1440 * (SERIES_FULL_APPS + SERIES_APPS // SPARSE_EVERY),
                    MINUTE_DAYS * 1440,
                    SERIES_APPS,
                    SERIES_FULL_APPS,
                    SPARSE_EVERY,
                )
                written += int(status.split()[-1])
        if written != total:
            raise RuntimeError(f"series: seeded {written:,} minute rows, expected {total:,}")
        day_rows = 0
        with ticking(
            f"series: seeding {SERIES_APPS * DAY_ROWS_DAYS:,} day rows ({DAY_ROWS_DAYS} days)",
            status=lambda: f"{day_rows:,} rows",
        ):
            for first in range(0, DAY_ROWS_DAYS, 50):
                status = await connection.execute(
                    _SEED_DAYS, end.date(), first, DAY_ROWS_DAYS, SERIES_APPS, 50
                )
                day_rows += int(status.split()[-1])
        for statement in keys:
            with ticking(f"series: {statement[:90]}"):
                await connection.execute(statement)
        with ticking("series: VACUUM ANALYZE (sets the visibility map, as autovacuum does)"):
            await connection.execute("VACUUM ANALYZE usage_minute, usage_day")
        sizes = await connection.fetchrow(
            "SELECT pg_table_size('usage_minute') AS heap, pg_indexes_size('usage_minute') AS idx"
        )
        await connection.execute(
            "CREATE TABLE bench_seed (end_minute timestamptz, minute_rows bigint, day_rows"
            " bigint, seed_seconds float8, minute_heap_bytes bigint, minute_index_bytes bigint)"
        )
        await connection.execute(
            "INSERT INTO bench_seed VALUES ($1, $2, $3, $4, $5, $6)",
            end,
            written,
            day_rows,
            time.perf_counter() - started,
            sizes["heap"],
            sizes["idx"],
        )
    finally:
        await connection.close()
    say(f"series: seeded in {time.perf_counter() - started:.0f}s")


async def _drop_indexes(connection: "asyncpg.Connection[asyncpg.Record]") -> list[str]:
    """Drop the seeded tables' keys and indexes; the statements that recreate them as defined."""
    restore = []
    for table in TABLES:
        for row in await connection.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
            " WHERE conrelid = $1::regclass AND contype = 'p'",
            table,
        ):
            await connection.execute(f"ALTER TABLE {table} DROP CONSTRAINT {row['conname']}")
            restore.append(f"ALTER TABLE {table} ADD CONSTRAINT {row['conname']} {row['def']}")
        for row in await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table
        ):
            await connection.execute(f"DROP INDEX {row['indexname']}")
            restore.append(row["indexdef"])
    return restore


_TIMED = (
    "select_1",
    *_MINUTE_VARIANTS,
    "minute_24h_run_queue",
    "minute_24h_read_series",
    "day_30d",
    *(f"{key}_server" for key in _MINUTE_VARIANTS),
    "day_30d_server",
    "minute_24h_heap",
    "minute_24h_heap_server",
)


async def _server_ms(
    connection: "asyncpg.Connection[asyncpg.Record]", query: str, *args: Any
) -> float:
    """Planning + execution time inside PostgreSQL (EXPLAIN ANALYZE without per-node timing)."""
    found = json.loads(
        await connection.fetchval(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {query}", *args)
    )[0]
    return float(found["Planning Time"] + found["Execution Time"])


def _run_queue_ms(pid: int) -> float:
    """How long `pid` has waited for a CPU so far, in ms (Linux schedstat; 0 where absent)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


@contextmanager
def full_collections() -> Iterator[list[float]]:
    """The pause of each full (generation 2) garbage collection while inside, in ms."""
    pauses: list[float] = []
    started = 0.0

    def note(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if info["generation"] == 2 and phase == "start":
            started = time.perf_counter()
        elif info["generation"] == 2:
            pauses.append((time.perf_counter() - started) * 1000)

    gc.callbacks.append(note)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(note)


def _p(timings: list[float], pct: float) -> float:
    ordered = sorted(timings)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct))]


async def _plan(
    connection: "asyncpg.Connection[asyncpg.Record]", query: str, *args: Any
) -> dict[str, Any]:
    found = json.loads(
        await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", *args)
    )[0]
    plan = scan = found["Plan"]
    while scan.get("Plans"):  # the scan under the minute series' Aggregate
        scan = scan["Plans"][0]
    return {
        "node": scan["Node Type"],
        "top_node": plan["Node Type"],
        "rows": scan["Actual Rows"],
        "heap_fetches": scan.get("Heap Fetches"),
        "shared_hit": plan["Shared Hit Blocks"],
        "shared_read": plan["Shared Read Blocks"],
        "execution_ms": found["Execution Time"],
    }


async def _time_read_series(
    url: str, apps: list[str], start: datetime, end: datetime
) -> tuple[list[float], float, list[float]]:
    """read_series of each app's minutes in [start, end): ms each, CPU ms in all, full GCs."""
    timings = []
    cpu_ms = 0.0
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=1)
    try:
        with (
            ticking(f"series: {len(apps)} x read_series, 24 h of minutes"),
            full_collections() as pauses,
        ):
            for app in apps:
                cpu = time.process_time()
                started = time.perf_counter()
                points = await read_series(pool, app, "minute", start, end)
                timings.append((time.perf_counter() - started) * 1000)
                cpu_ms += (time.process_time() - cpu) * 1000
                if len(points) != 1440:
                    raise RuntimeError(f"series read_series: {len(points)} points, not 1,440")
    finally:
        await pool.close()
    return timings, cpu_ms, pauses


async def _plans_and_heap(
    connection: "asyncpg.Connection[asyncpg.Record]",
    order: list[str],
    minute_bounds: tuple[datetime, datetime],
    day_bounds: tuple[Any, Any],
    timings: dict[str, list[float]],
) -> dict[str, Any]:
    """EXPLAIN of each series, then the reference: minute series read from the heap (timed)."""
    plans = {
        "minute_24h": await _plan(connection, MINUTE_SERIES_SQL, order[0], *minute_bounds),
        "minute_24h_arrays": await _plan(connection, ARRAYS_MINUTE_SQL, order[0], *minute_bounds),
        "day_30d": await _plan(connection, DAY_SERIES_SQL, order[0], *day_bounds),
    }
    await connection.execute("SET enable_indexonlyscan = off")
    heap = await connection.prepare(MINUTE_SERIES_SQL)
    with ticking(f"series: reference, {REFERENCE_QUERIES} minute series from the heap"):
        for app in order[:REFERENCE_QUERIES]:
            timings["minute_24h_heap_server"].append(
                await _server_ms(connection, MINUTE_SERIES_SQL, app, *minute_bounds)
            )
            started = time.perf_counter()
            await heap.fetch(app, *minute_bounds)
            timings["minute_24h_heap"].append((time.perf_counter() - started) * 1000)
    plans["minute_24h_heap"] = await _plan(connection, MINUTE_SERIES_SQL, order[1], *minute_bounds)
    return plans


async def measure_series(database_url: str) -> dict[str, Any]:
    """Seed (or reuse) and time the read model's series queries; figures for the run's JSON."""
    url, seed = await prepare_seed(database_url)
    end: datetime = seed["end_minute"]
    minute_bounds = (end - timedelta(minutes=1439), end)
    after_end = end + timedelta(minutes=1)  # read_series takes a half-open range
    day_bounds = (end.date() - timedelta(days=29), end.date())
    apps = [app_id(index) for index in range(SERIES_FULL_APPS)]
    order = [apps[index % len(apps)] for index in range(QUERIES)]
    random.Random(7).shuffle(order)
    timings: dict[str, list[float]] = {key: [] for key in _TIMED}
    cpu_ms = dict.fromkeys((*_MINUTE_VARIANTS, "minute_24h_read_series"), 0.0)
    full_gc: dict[str, list[float]] = {}
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        floor = await connection.prepare("SELECT 1")
        minute = await connection.prepare(MINUTE_SERIES_SQL)
        before = await connection.prepare(BEFORE_MINUTE_SQL)
        arrays = await connection.prepare(ARRAYS_MINUTE_SQL)
        day = await connection.prepare(DAY_SERIES_SQL)
        backend = int(await connection.fetchval("SELECT pg_backend_pid()"))

        with (
            ticking(
                f"series: {QUERIES} x (SELECT 1, 24 h of minutes x 3, 30 days) over {len(apps)}"
            ),
            full_collections() as full_gc["statements"],
        ):
            for number, app in enumerate(order):
                # In the server first, so its figure, not the client's, pays an app's first touch.
                for key, query, bounds in (
                    ("minute_24h_server", MINUTE_SERIES_SQL, minute_bounds),
                    ("minute_24h_before_server", BEFORE_MINUTE_SQL, minute_bounds),
                    ("minute_24h_arrays_server", ARRAYS_MINUTE_SQL, minute_bounds),
                    ("day_30d_server", DAY_SERIES_SQL, day_bounds),
                ):
                    timings[key].append(await _server_ms(connection, query, app, *bounds))
                fetches: list[tuple[str, Callable[..., Awaitable[Any]], tuple[Any, ...], int]] = [
                    ("select_1", floor.fetch, (), 1),
                    ("minute_24h", minute.fetch, (app, *minute_bounds), 1440),
                    ("minute_24h_before", before.fetch, (app, *minute_bounds), 1440),
                    ("minute_24h_arrays", arrays.fetch, (app, *minute_bounds), 1440),
                    ("day_30d", day.fetch, (app, *day_bounds), 30),
                ]
                shift = number % len(fetches)  # rotated, so no variant always follows another
                for key, fetch, args, expected in fetches[shift:] + fetches[:shift]:
                    waited = _run_queue_ms(os.getpid()) + _run_queue_ms(backend)
                    cpu = time.process_time()
                    started = time.perf_counter()
                    result = await fetch(*args)
                    timings[key].append((time.perf_counter() - started) * 1000)
                    if key in cpu_ms:
                        cpu_ms[key] += (time.process_time() - cpu) * 1000
                    if key == "minute_24h":
                        waited = _run_queue_ms(os.getpid()) + _run_queue_ms(backend) - waited
                        timings["minute_24h_run_queue"].append(waited)
                    got = len(result[0]["bucket"]) if key == "minute_24h_arrays" else len(result)
                    if got != expected:
                        raise RuntimeError(f"series {key}: {got} rows, not {expected}")
        plans = await _plans_and_heap(connection, order, minute_bounds, day_bounds, timings)
    finally:
        await connection.close()
    reads, cpu_ms["minute_24h_read_series"], full_gc["read_series"] = await _time_read_series(
        url, order[:READ_SERIES_QUERIES], minute_bounds[0], after_end
    )
    timings["minute_24h_read_series"] = reads
    found: dict[str, Any] = {
        f"series_{key}_{name}_ms": _p(values, pct)
        for key, values in timings.items()
        for name, pct in (("p50", 0.5), ("p99", 0.99))
    }
    found |= {
        **{
            f"series_{key}_client_cpu_ms": spent / len(timings[key])
            for key, spent in cpu_ms.items()
        },
        **{f"series_full_gc_{loop}_count": len(pauses) for loop, pauses in full_gc.items()},
        **{
            f"series_full_gc_{loop}_max_ms": max(pauses, default=0.0)
            for loop, pauses in full_gc.items()
        },
        "series_apps": SERIES_APPS,
        "series_queried_apps": SERIES_FULL_APPS,
        "series_minute_rows": seed["minute_rows"],
        "series_day_rows": seed["day_rows"],
        "series_density": (
            f"{SERIES_FULL_APPS} apps every minute, the rest 1 minute in {SPARSE_EVERY}"
        ),
        "series_seed_seconds": seed["seed_seconds"],
        "series_minute_heap_mb": seed["minute_heap_bytes"] / 2**20,
        "series_minute_index_mb": seed["minute_index_bytes"] / 2**20,
        "series_plans": plans,
    }
    say(
        f"series over {seed['minute_rows']:,} minute rows, p50/p99 ms: 24 h in PostgreSQL"
        f" {found['series_minute_24h_server_p50_ms']:.2f}/"
        f"{found['series_minute_24h_server_p99_ms']:.2f} ({plans['minute_24h']['node']},"
        f" {plans['minute_24h']['shared_hit'] + plans['minute_24h']['shared_read']} buffers),"
        f" round trip {found['series_minute_24h_p50_ms']:.2f}/"
        f"{found['series_minute_24h_p99_ms']:.2f}"
        f" ({found['series_minute_24h_client_cpu_ms']:.2f} ms client CPU, waiting for a CPU"
        f" {found['series_minute_24h_run_queue_p50_ms']:.2f}/"
        f"{found['series_minute_24h_run_queue_p99_ms']:.2f}; before:"
        f" {found['series_minute_24h_before_p50_ms']:.2f}/"
        f"{found['series_minute_24h_before_p99_ms']:.2f},"
        f" {found['series_minute_24h_before_client_cpu_ms']:.2f} ms CPU; arrays:"
        f" {found['series_minute_24h_arrays_p50_ms']:.2f}/"
        f"{found['series_minute_24h_arrays_p99_ms']:.2f},"
        f" {found['series_minute_24h_arrays_client_cpu_ms']:.2f} ms CPU); read_series"
        f" {found['series_minute_24h_read_series_p50_ms']:.2f}/"
        f"{found['series_minute_24h_read_series_p99_ms']:.2f}"
        f" ({found['series_full_gc_read_series_count']} full GCs, longest"
        f" {found['series_full_gc_read_series_max_ms']:.0f} ms); 30 d in PostgreSQL"
        f" {found['series_day_30d_server_p50_ms']:.2f}/{found['series_day_30d_server_p99_ms']:.2f};"
        f" SELECT 1 {found['series_select_1_p50_ms']:.2f}/{found['series_select_1_p99_ms']:.2f};"
        f" 24 h from the heap in PostgreSQL {found['series_minute_24h_heap_server_p50_ms']:.2f}/"
        f"{found['series_minute_24h_heap_server_p99_ms']:.2f}"
    )
    return found
