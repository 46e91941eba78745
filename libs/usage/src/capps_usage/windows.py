"""Calls of one app in the current UTC minute and hour: the basis of rate-limit headroom.

First choice: the gateways' own rate-limit counters (ratelimit.py; the windows they enforce,
by Redis's clock). If Redis does not answer: the calls counted in usage_minute, the
aggregator's view (a moment behind, and counting refused calls too), better than nothing.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as redis
from redis.exceptions import RedisError

from capps_usage.keys import minute_floor
from capps_usage.ratelimit import WINDOWS, ratelimit_key, window_start

log = logging.getLogger(__name__)

GATEWAY_SOURCE = "the gateways' rate-limit counters of the current UTC minute and hour"
USAGE_SOURCE = (
    "usage counters of the current UTC minute and hour (Redis did not answer; a moment "
    "behind the gateways, whose own counters decide a 429)"
)


@dataclass(frozen=True, slots=True)
class CurrentWindows:
    """Calls so far in the current minute and hour, the windows' starts, and where from."""

    minute_start: datetime
    minute_requests: int
    hour_start: datetime
    hour_requests: int
    source: str


async def read_gateway_windows(client: "redis.Redis", app_id: str) -> CurrentWindows:
    """The gateways' counters of the windows holding Redis's current time."""
    seconds, _ = await client.time()
    minute = window_start(int(seconds), WINDOWS["minute"])
    hour = window_start(int(seconds), WINDOWS["hour"])
    used_minute, used_hour = await client.mget(
        [ratelimit_key(app_id, "minute", minute), ratelimit_key(app_id, "hour", hour)]
    )
    return CurrentWindows(
        datetime.fromtimestamp(minute, UTC),
        int(used_minute or 0),
        datetime.fromtimestamp(hour, UTC),
        int(used_hour or 0),
        GATEWAY_SOURCE,
    )


async def read_usage_windows(pool: asyncpg.Pool, app_id: str, now: datetime) -> CurrentWindows:
    """The calls usage_minute counted in the minute and the hour holding `now`."""
    minute = minute_floor(now)
    hour = minute.replace(minute=0)
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
    return CurrentWindows(
        minute, int(row["minute_requests"]), hour, int(row["hour_requests"]), USAGE_SOURCE
    )


async def read_current_windows(
    client: "redis.Redis", pool: asyncpg.Pool, app_id: str, now: datetime
) -> CurrentWindows:
    """The gateways' counters of the app's current windows, or usage_minute if Redis fails."""
    try:
        return await read_gateway_windows(client, app_id)
    except (RedisError, OSError) as exc:
        log.warning("rate-limit counters unavailable", extra={"error": type(exc).__name__})
    return await read_usage_windows(pool, app_id, now)
