"""Stats from PostgreSQL, the system of record: used while the hot store is not complete."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from capps_usage.keys import trend_days
from capps_usage.model import AppStats, DayCount


async def read_cold_last_seen(
    pool: asyncpg.Pool, app_ids: Sequence[str]
) -> dict[str, datetime | None]:
    """Last seen of many apps from app_last_seen."""
    rows = await pool.fetch(
        "SELECT a.id, s.last_seen FROM unnest($1::text[]) AS a(id) "
        "LEFT JOIN app_last_seen s ON s.app_id = a.id",
        list(app_ids),
    )
    return {row["id"]: row["last_seen"] for row in rows}


async def read_cold_stats(
    pool: asyncpg.Pool, app_ids: Sequence[str], now: datetime, *, with_trend: bool = True
) -> dict[str, AppStats]:
    """The same stats as the hot store gives, from usage_minute, usage_day and app_last_seen."""
    moment = now.astimezone(UTC)
    ids = list(app_ids)
    # Same window as the hot store: minutes overlapping (now - 24 h, now].
    rows = await pool.fetch(
        "SELECT a.id, s.last_seen, "
        "(SELECT COALESCE(sum(m.requests), 0) FROM usage_minute m WHERE m.app_id = a.id "
        "AND m.minute > $2 AND m.minute <= $3) AS requests_24h "
        "FROM unnest($1::text[]) AS a(id) LEFT JOIN app_last_seen s ON s.app_id = a.id",
        ids,
        moment - timedelta(hours=24, minutes=1),
        moment,
    )
    days = trend_days(moment) if with_trend else []
    per_day: dict[tuple[str, object], int] = {}
    if with_trend:
        day_rows = await pool.fetch(
            "SELECT app_id, day, requests FROM usage_day "
            "WHERE app_id = ANY($1::text[]) AND day >= $2 AND day <= $3",
            ids,
            days[0],
            days[-1],
        )
        per_day = {(row["app_id"], row["day"]): int(row["requests"]) for row in day_rows}
    return {
        row["id"]: AppStats(
            last_seen=row["last_seen"],
            requests_24h=int(row["requests_24h"]),
            trend_30d=[DayCount(day, per_day.get((row["id"], day), 0)) for day in days],
        )
        for row in rows
    }
