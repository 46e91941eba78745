"""Usage series of one app from PostgreSQL: minute or day buckets with every breakdown, zero-filled.

Ranges are half-open [start, end) in UTC, aligned down to whole buckets; the bounds keep one
read small (48 h of minutes, 400 days of days, the stores' own retention).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from capps_usage.latency import quantile_from_histogram

Granularity = Literal["minute", "day"]
MAX_BUCKETS: dict[Granularity, int] = {"minute": 48 * 60, "day": 400}
STEP: dict[Granularity, timedelta] = {"minute": timedelta(minutes=1), "day": timedelta(days=1)}
COUNTERS = (
    "requests",
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "denied",
    "throttled",
    "bytes_in",
    "bytes_out",
)


class RangeError(ValueError):
    """The requested range is empty, reversed or longer than the granularity allows."""


@dataclass(frozen=True, slots=True)
class UsagePoint:
    """One bucket of an app's usage; latency fields are None when the bucket had no calls."""

    start: datetime
    requests: int = 0
    status_2xx: int = 0
    status_3xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    denied: int = 0
    throttled: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    latency_ms_avg: float | None = None
    latency_ms_max: float | None = None
    latency_ms_p95: float | None = None
    """Day buckets only: estimated from the day's latency histogram."""


def align(moment: datetime, granularity: Granularity) -> datetime:
    """The start of the UTC bucket holding `moment`."""
    utc = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return utc.replace(hour=0, minute=0) if granularity == "day" else utc


def bucket_starts(granularity: Granularity, start: datetime, end: datetime) -> list[datetime]:
    """The buckets of [start, end), aligned down; RangeError if empty or too long."""
    if start.tzinfo is None or end.tzinfo is None:
        raise RangeError("from and to need a time zone (e.g. 2026-11-30T10:00:00Z)")
    first = align(start, granularity)
    step = STEP[granularity]
    count = -(-(end - first) // step)  # ceil: a partial last bucket is included
    if count <= 0:
        raise RangeError("to must be after from")
    if count > MAX_BUCKETS[granularity]:
        raise RangeError(
            f"at most {MAX_BUCKETS[granularity]} {granularity} buckets per call; "
            f"this range has {count}"
        )
    return [first + step * index for index in range(count)]


def point_of(start: datetime, row: Mapping[str, Any]) -> UsagePoint:
    """One stored row as a point; latency read only where there were calls."""
    requests = int(row["requests"])
    counters = {name: int(row[name]) for name in COUNTERS}
    hist = row.get("latency_hist")
    return UsagePoint(
        start=start,
        **counters,
        latency_ms_avg=float(row["latency_ms_sum"]) / requests if requests else None,
        latency_ms_max=float(row["latency_ms_max"]) if requests else None,
        latency_ms_p95=quantile_from_histogram(list(hist), 0.95) if hist and requests else None,
    )


def zero_filled(
    starts: Sequence[datetime], rows: Iterable[tuple[datetime, Mapping[str, Any]]]
) -> list[UsagePoint]:
    """One point per bucket start: the stored row where there is one, zeros elsewhere."""
    stored = dict(rows)
    return [
        point_of(start, stored[start]) if start in stored else UsagePoint(start=start)
        for start in starts
    ]


_COLUMNS = ", ".join((*COUNTERS, "latency_ms_sum", "latency_ms_max"))
# Every column read here is in the tables' primary keys (INCLUDE, aggregator migration 0004),
# so a series is an index-only scan over one app's adjacent index entries.
# The minute goes out as an integer: asyncpg decoding 1,440 timestamptz values into datetimes
# was most of the ~3 ms of client CPU per 24 hours. date_part, not extract: extract's numeric
# result costs the server more.
MINUTE_SERIES_SQL = (
    f"SELECT date_part('epoch', minute)::bigint / 60 AS bucket, {_COLUMNS} "  # noqa: S608
    "FROM usage_minute WHERE app_id = $1 AND minute >= $2 AND minute <= $3"
)
"""One app's minute rows in [$2, $3] (both aligned bucket starts); bucket: minutes since 1970."""
DAY_SERIES_SQL = (
    f"SELECT day AS bucket, {_COLUMNS}, latency_hist FROM usage_day "  # noqa: S608
    "WHERE app_id = $1 AND day >= $2 AND day <= $3"
)
"""One app's day rows in [$2, $3] (dates)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def minute_points(starts: Sequence[datetime], rows: Iterable[Sequence[Any]]) -> list[UsagePoint]:
    """One point per minute start from MINUTE_SERIES_SQL's rows (in its column order), zero-filled.

    Rows are unpacked by position, not read by name into a dict: the 24-hour series makes
    1,440 points, and each step per row shows in the registry's answer time.
    """
    stored: list[Sequence[Any] | None] = [None] * len(starts)
    first = (starts[0] - _EPOCH) // STEP["minute"]
    for row in rows:
        index = row[0] - first
        if 0 <= index < len(stored):
            stored[index] = row
    return [
        UsagePoint(start=start) if row is None else _minute_point(start, row)
        for start, row in zip(starts, stored, strict=True)
    ]


def _minute_point(start: datetime, row: Sequence[Any]) -> UsagePoint:
    _, requests, s2xx, s3xx, s4xx, s5xx, denied, throttled, bytes_in, bytes_out, total, top = row
    return UsagePoint(
        start=start,
        requests=requests,
        status_2xx=s2xx,
        status_3xx=s3xx,
        status_4xx=s4xx,
        status_5xx=s5xx,
        denied=denied,
        throttled=throttled,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        latency_ms_avg=total / requests if requests else None,
        latency_ms_max=float(top) if requests else None,
    )


async def read_series(
    pool: asyncpg.Pool,
    app_id: str,
    granularity: Granularity,
    start: datetime,
    end: datetime,
) -> list[UsagePoint]:
    """The app's buckets in [start, end), zero-filled; RangeError for a bad range."""
    starts = bucket_starts(granularity, start, end)
    if granularity == "minute":
        rows = await pool.fetch(MINUTE_SERIES_SQL, app_id, starts[0], starts[-1])
        return minute_points(starts, rows)
    rows = await pool.fetch(DAY_SERIES_SQL, app_id, starts[0].date(), starts[-1].date())
    found = [
        (datetime(row["bucket"].year, row["bucket"].month, row["bucket"].day, tzinfo=UTC), row)
        for row in rows
    ]
    return zero_filled(starts, [(start, dict(row)) for start, row in found])
