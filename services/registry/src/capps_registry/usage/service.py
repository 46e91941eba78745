"""Reads app stats through the usage store contract, in one round trip per call."""

import logging
from datetime import datetime

import redis.asyncio as redis
from redis.exceptions import RedisError

from capps_registry.errors import ApiError
from capps_usage.stats import AppStats, read_stats

log = logging.getLogger(__name__)


async def stats_of(
    client: "redis.Redis", app_ids: list[str], now: datetime | None = None
) -> dict[str, AppStats]:
    """Stats of every app in `app_ids`; 503 if the usage store does not answer."""
    if not app_ids:
        return {}
    try:
        return await read_stats(client, app_ids, now)
    except (RedisError, OSError) as exc:
        log.warning("usage store unavailable", extra={"error": type(exc).__name__})
        raise ApiError(503, "usage_unavailable", "usage stats are unavailable; retry") from None
