"""Requests of one app in the current UTC minute and hour: the basis of rate-limit headroom.

Read from the hot store when its ready marker is there (the marker and the hour's hash in one
pipeline), else from usage_minute. These are counted calls (the aggregator's view, a moment
behind the gateway), not the gateway's own rate-limit counters.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import redis.asyncio as redis

from capps_usage.keys import HOT_READY_KEY, hour_key, minute_field, minute_floor


@dataclass(frozen=True, slots=True)
class CurrentWindows:
    """Calls counted so far in the current minute and the current hour."""

    minute_start: datetime
    minute_requests: int
    hour_start: datetime
    hour_requests: int


async def read_current_windows(
    client: "redis.Redis", pool: asyncpg.Pool, app_id: str, now: datetime
) -> CurrentWindows:
    """The app's calls in the minute and the hour holding `now`."""
    minute = minute_floor(now)
    hour = minute.replace(minute=0)
    pipe = client.pipeline(transaction=False)
    pipe.exists(HOT_READY_KEY)
    pipe.hgetall(hour_key(app_id, minute))
    ready, counts = await pipe.execute()
    if ready:
        by_minute = {int(field): int(count) for field, count in counts.items()}
        this_minute = by_minute.get(int(minute_field(minute)), 0)
        return CurrentWindows(minute, this_minute, hour, sum(by_minute.values()))
    row = await pool.fetchrow(
        "SELECT COALESCE(sum(requests), 0) AS hour_requests, "
        "COALESCE(sum(requests) FILTER (WHERE minute = $3), 0) AS minute_requests "
        "FROM usage_minute WHERE app_id = $1 AND minute >= $2 AND minute < $4",
        app_id,
        hour,
        minute,
        hour + timedelta(hours=1),
    )
    assert row is not None
    return CurrentWindows(minute, int(row["minute_requests"]), hour, int(row["hour_requests"]))
