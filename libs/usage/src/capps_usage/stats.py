"""The stats read model: last seen, trailing-24h requests and the 30-day trend of apps."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import redis.asyncio as redis

from capps_usage.keys import day_field, day_key, hour_key, seen_key, trailing_hours, trend_days


@dataclass(frozen=True, slots=True)
class DayCount:
    """Requests on one UTC day."""

    date: date
    requests: int


@dataclass(frozen=True, slots=True)
class AppStats:
    """What an admin sees of an app's usage."""

    last_seen: datetime | None
    requests_24h: int
    trend_30d: list[DayCount]


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
    client: "redis.Redis", app_ids: list[str], now: datetime | None = None
) -> dict[str, AppStats]:
    """Read the stats of many apps in one pipelined round trip."""
    moment = now or datetime.now(UTC)
    hours = trailing_hours(moment)
    days = trend_days(moment)
    pipe = client.pipeline(transaction=False)
    for app_id in app_ids:
        pipe.get(seen_key(app_id))
        pipe.hmget(day_key(app_id), [day_field(day) for day in days])
        for hour in hours:
            pipe.hgetall(hour_key(app_id, hour))
    replies = await pipe.execute()
    stride = 2 + len(hours)
    stats: dict[str, AppStats] = {}
    for index, app_id in enumerate(app_ids):
        seen, day_counts, *hour_hashes = replies[index * stride : (index + 1) * stride]
        stats[app_id] = AppStats(
            last_seen=datetime.fromtimestamp(int(seen) / 1000, UTC) if seen else None,
            requests_24h=sum_trailing_minutes(hours, hour_hashes, moment),
            trend_30d=[
                DayCount(day, int(count) if count else 0)
                for day, count in zip(days, day_counts, strict=True)
            ],
        )
    return stats
