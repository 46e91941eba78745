"""The stats read model: last seen, trailing-24h requests and the 30-day trend of apps.

Redis answers while its ready marker says it holds everything; otherwise (a restart without
its data, a flush, a rebuild in progress) PostgreSQL answers, so a reader is never wrong.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as redis

from capps_usage.cold import read_cold_last_seen, read_cold_stats
from capps_usage.hot import read_hot_last_seen, read_hot_stats
from capps_usage.model import AppStats, DayCount

__all__ = ["AppStats", "DayCount", "read_last_seen", "read_stats", "sum_trailing_minutes"]


def sum_trailing_minutes(
    hours: list[datetime], hashes: list[dict[bytes, bytes]], now: datetime
) -> int:
    """Sum minute counters inside (now - 24 h, now], given each hour's hash of minutes."""
    window_start = now.astimezone(UTC) - timedelta(hours=24)
    total = 0
    for hour, minutes in zip(hours, hashes, strict=True):
        for field, count in minutes.items():
            minute = hour + timedelta(minutes=int(field))
            if window_start < minute + timedelta(minutes=1) and minute <= now:
                total += int(count)
    return total


async def read_stats(
    client: "redis.Redis",
    app_ids: Sequence[str],
    now: datetime | None = None,
    *,
    pool: asyncpg.Pool | None = None,
    with_trend: bool = True,
) -> dict[str, AppStats]:
    """Stats of many apps: one Redis round trip, or PostgreSQL while Redis is incomplete.

    Without a `pool` there is no system of record to fall back to, so Redis answers as it is.
    """
    if not app_ids:
        return {}
    moment = now or datetime.now(UTC)
    hot = await read_hot_stats(
        client, app_ids, moment, with_trend=with_trend, require_ready=pool is not None
    )
    if hot is not None:
        return hot
    assert pool is not None  # only a ready-gated read answers None
    return await read_cold_stats(pool, app_ids, moment, with_trend=with_trend)


async def read_last_seen(
    client: "redis.Redis", pool: asyncpg.Pool, app_ids: Sequence[str]
) -> dict[str, datetime | None]:
    """Last seen of many apps (sorting a list by it): one MGET, or PostgreSQL when not ready."""
    if not app_ids:
        return {}
    hot = await read_hot_last_seen(client, app_ids)
    if hot is not None:
        return hot
    return await read_cold_last_seen(pool, app_ids)
