"""Retention against real PostgreSQL: only rows older than the configured ages go."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from capps_aggregator.retention import RETENTION_LOCK_ID, UsageRetention

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 0, 0, 30, tzinfo=UTC)  # just after midnight: the edge case


async def test_retention_drops_only_what_is_old(pg: Any, run_id: str) -> None:
    app = f"app-{run_id}-ret"
    # Minute rows: kept from the start of the 14th day back (2026-11-17 00:00) onwards.
    minutes = [
        datetime(2026, 11, 16, 23, 59, tzinfo=UTC),  # expired
        datetime(2026, 11, 16, 0, 0, tzinfo=UTC),  # expired
        datetime(2026, 11, 17, 0, 0, tzinfo=UTC),  # kept
        datetime(2026, 11, 29, 23, 59, tzinfo=UTC),  # kept
        NOW.replace(second=0),  # kept
    ]
    await pg.executemany(
        "INSERT INTO usage_minute (app_id, tenant_id, minute, requests) VALUES ($1, 't', $2, 1)",
        [(app, minute) for minute in minutes],
    )
    first_day = date(2026, 11, 30) - timedelta(days=399)
    days = [first_day - timedelta(days=2), first_day - timedelta(days=1), first_day, NOW.date()]
    await pg.executemany(
        "INSERT INTO usage_day (app_id, tenant_id, day, requests) VALUES ($1, 't', $2, 1)",
        [(app, day) for day in days],
    )
    await pg.executemany(
        "INSERT INTO usage_route_day (app_id, tenant_id, day, method, route, requests, errors) "
        "VALUES ($1, 't', $2, 'GET', '/r', 1, 0)",
        [(app, day) for day in days],
    )

    # Batches of two rows, so the draining loop runs more than one batch.
    retention = UsageRetention(pg, minute_days=14, day_days=400, batch_rows=2)
    deleted = await retention.run_once(NOW)

    assert deleted == {"usage_minute": 2, "usage_day": 2, "usage_route_day": 2}
    kept_minutes = await pg.fetch(
        "SELECT minute FROM usage_minute WHERE app_id = $1 ORDER BY minute", app
    )
    assert [row["minute"] for row in kept_minutes] == minutes[2:]
    for table in ("usage_day", "usage_route_day"):
        kept = await pg.fetch(f"SELECT day FROM {table} WHERE app_id = $1 ORDER BY day", app)
        assert [row["day"] for row in kept] == days[2:], table
    assert await retention.run_once(NOW) == {
        "usage_minute": 0,
        "usage_day": 0,
        "usage_route_day": 0,
    }


async def test_only_one_worker_runs_retention_at_a_time(pg: Any) -> None:
    retention = UsageRetention(pg, minute_days=14, day_days=400)
    async with pg.acquire() as holder:
        await holder.execute("SELECT pg_advisory_lock($1)", RETENTION_LOCK_ID)
        try:
            assert await retention.run_once(NOW) is None
        finally:
            await holder.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK_ID)
    assert await retention.run_once(NOW) is not None
