"""Usage stats of apps from the shared read model (Redis hot store, PostgreSQL behind it)."""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from redis.exceptions import RedisError

from capps_registry.errors import ApiError
from capps_registry.state import RegistryState
from capps_usage.cold import read_cold_stats
from capps_usage.stats import AppStats, read_stats

log = logging.getLogger(__name__)


async def stats_of(
    state: RegistryState,
    app_ids: Sequence[str],
    now: datetime | None = None,
    *,
    with_trend: bool = True,
) -> dict[str, AppStats]:
    """Stats of every app in `app_ids`; PostgreSQL answers if Redis does not, 503 if neither."""
    if not app_ids:
        return {}
    moment = now or datetime.now(UTC)
    try:
        try:
            return await read_stats(
                state.redis, app_ids, moment, pool=state.pool, with_trend=with_trend
            )
        except (RedisError, OSError) as exc:
            log.warning("usage hot store unavailable", extra={"error": type(exc).__name__})
            return await read_cold_stats(state.pool, app_ids, moment, with_trend=with_trend)
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("usage store unavailable", extra={"error": type(exc).__name__})
        raise ApiError(503, "usage_unavailable", "usage stats are unavailable; retry") from None
