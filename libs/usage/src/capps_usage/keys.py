"""Bucket arithmetic and the Redis key layout of the hot usage counters.

Redis holds, per app:
- `capps:usage:{app}:m:{YYYYMMDDHH}`: hash, field = minute of the hour ("00".."59") -> requests,
  and field `t` -> the hour's total, so a reader sums a whole hour with one field instead of
  sixty; expires 49 hours after its hour began (the design keeps the last 48 h of minutes).
- `capps:usage:{app}:d`: hash, field = UTC day "YYYY-MM-DD" -> requests; days older than
  35 days are deleted by the writer.
- `capps:usage:{app}:seen`: last seen, epoch milliseconds.
- `capps:usage:offsets`: hash, field = "{topic}:{partition}" -> next offset to apply; the
  watermark that makes the writer's updates idempotent.
- `capps:usage:ready`: the completeness marker. The aggregator sets it only while Redis holds
  everything PostgreSQL counted up to Redis's own watermarks (after a rebuild from PostgreSQL,
  or on a fresh store whose PostgreSQL watermarks are all 0). Missing means Redis lost data
  (restart without persistence, FLUSHDB): the writer refuses to count into it and rebuilds it,
  and readers answer from PostgreSQL meanwhile.
PostgreSQL (system of record) keeps the same counters in `usage_minute`, `usage_day` and
`app_last_seen`, with `usage_offsets` as the watermark.
"""

from datetime import UTC, date, datetime, timedelta

MINUTE_TTL_S = 49 * 3600
DAY_RETENTION_DAYS = 35
OFFSETS_KEY = "capps:usage:offsets"
HOT_READY_KEY = "capps:usage:ready"
HOUR_TOTAL_FIELD = "t"


def minute_floor(moment: datetime) -> datetime:
    """The start of the UTC minute holding `moment`."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def utc_day(moment: datetime) -> date:
    """The UTC calendar day holding `moment`."""
    return moment.astimezone(UTC).date()


def hour_key(app_id: str, minute: datetime) -> str:
    """The hash of one app's minute counters for the hour holding `minute`."""
    return f"capps:usage:{app_id}:m:{minute.astimezone(UTC):%Y%m%d%H}"


def hour_key_at(app_id: str, hour: int) -> str:
    """`hour_key` of the hour `hour` counted in hours since the Unix epoch (UTC)."""
    return f"capps:usage:{app_id}:m:{datetime.fromtimestamp(hour * 3600, UTC):%Y%m%d%H}"


def day_field_at(day: int) -> str:
    """`day_field` of the day `day` counted in days since the Unix epoch (UTC)."""
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def minute_field(minute: datetime) -> str:
    """The field of `minute` inside its hour hash."""
    return f"{minute.astimezone(UTC):%M}"


def day_key(app_id: str) -> str:
    """The hash of one app's day counters."""
    return f"capps:usage:{app_id}:d"


def day_field(day: date) -> str:
    """The field of `day` inside the day hash."""
    return day.isoformat()


def seen_key(app_id: str) -> str:
    """The key holding one app's last seen time in epoch milliseconds."""
    return f"capps:usage:{app_id}:seen"


def offset_field(topic: str, partition: int) -> str:
    """The watermark field of one topic partition."""
    return f"{topic}:{partition}"


def trailing_hours(now: datetime, hours: int = 24) -> list[datetime]:
    """The starts of the hours touching the trailing window (hours + 1 of them, oldest first)."""
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=offset) for offset in range(hours, -1, -1)]


def trend_days(now: datetime, days: int = 30) -> list[date]:
    """The last `days` UTC days, oldest first, ending today."""
    today = utc_day(now)
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
