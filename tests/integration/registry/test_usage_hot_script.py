"""The hot-store script sums exactly the minutes the pure reference sums, edges included."""

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from capps_usage.hot import read_hot_stats
from capps_usage.keys import HOUR_TOTAL_FIELD, hour_key, minute_field, trailing_hours
from capps_usage.stats import sum_trailing_minutes
from tests.integration.registry.conftest import Running

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("with_totals", [True, False], ids=["hour-totals", "minutes-only"])
@pytest.mark.parametrize("second", [0, 1, 59])
async def test_the_script_matches_the_reference_sum(
    registry: Running, second: int, with_totals: bool
) -> None:
    redis = registry.state.redis
    now = datetime(2026, 5, 4, 13, 27, second, 250_000, tzinfo=UTC)
    app_id = f"script-{uuid.uuid4()}"
    rng = random.Random(second)
    hours = trailing_hours(now)
    hashes: list[dict[bytes, bytes]] = []
    for hour in hours:
        # Every minute of the first and last hours (the edges), a random few elsewhere.
        edge = hour in (hours[0], hours[-1])
        minutes = range(60) if edge else rng.sample(range(60), 5)
        counts: dict[Any, Any] = {
            minute_field(hour + timedelta(minutes=m)): rng.randint(1, 9) for m in minutes
        }
        # The writer keeps each hour's total beside its minutes; hours written before it did
        # have minutes only. Both must sum the same.
        stored: dict[Any, Any] = dict(counts)
        if with_totals:
            stored[HOUR_TOTAL_FIELD] = sum(counts.values())
        await redis.hset(hour_key(app_id, hour), mapping=stored)
        hashes.append({field.encode(): str(count).encode() for field, count in counts.items()})
    try:
        stats = await read_hot_stats(redis, [app_id], now, require_ready=False)
        assert stats is not None
        expected = sum_trailing_minutes(hours, hashes, now)
        assert expected > 0
        assert stats[app_id].requests_24h == expected
    finally:
        await redis.delete(*[hour_key(app_id, hour) for hour in hours])
