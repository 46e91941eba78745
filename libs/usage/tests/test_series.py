"""Series buckets: alignment, bounds and zero-filling, as pure functions."""

from datetime import UTC, datetime, timedelta

import pytest

from capps_usage.series import (
    COUNTERS,
    RangeError,
    UsagePoint,
    bucket_starts,
    minute_points,
    point_of,
    zero_filled,
)

START = datetime(2026, 11, 27, 10, 30, 15, tzinfo=UTC)


def test_minute_buckets_align_down_and_include_a_partial_last_one() -> None:
    starts = bucket_starts("minute", START, START + timedelta(minutes=2))
    assert starts == [
        datetime(2026, 11, 27, 10, 30, tzinfo=UTC),
        datetime(2026, 11, 27, 10, 31, tzinfo=UTC),
        datetime(2026, 11, 27, 10, 32, tzinfo=UTC),
    ]


def test_day_buckets_are_utc_midnights() -> None:
    starts = bucket_starts("day", START, START + timedelta(days=2))
    assert starts[0] == datetime(2026, 11, 27, tzinfo=UTC)
    assert len(starts) == 3


def test_bounds() -> None:
    assert len(bucket_starts("minute", START, START + timedelta(hours=47, minutes=59))) == 48 * 60
    with pytest.raises(RangeError, match="at most 2880"):
        bucket_starts("minute", START, START + timedelta(hours=48, minutes=1))
    assert len(bucket_starts("day", START, START + timedelta(days=399))) == 400
    with pytest.raises(RangeError, match="at most 400"):
        bucket_starts("day", START, START + timedelta(days=401))
    with pytest.raises(RangeError, match="after"):
        bucket_starts("minute", START, START - timedelta(minutes=1))
    with pytest.raises(RangeError, match="time zone"):
        bucket_starts("minute", START.replace(tzinfo=None), START)


def test_zero_filling_and_latency_of_empty_buckets() -> None:
    starts = bucket_starts("minute", START, START + timedelta(minutes=3))
    row = {
        "requests": 4,
        "status_2xx": 3,
        "status_3xx": 0,
        "status_4xx": 1,
        "status_5xx": 0,
        "denied": 1,
        "throttled": 0,
        "bytes_in": 10,
        "bytes_out": 20,
        "latency_ms_sum": 40.0,
        "latency_ms_max": 25.0,
    }
    points = zero_filled(starts, [(starts[1], row)])
    assert points[0] == UsagePoint(start=starts[0])
    assert points[1] == point_of(starts[1], row)
    assert points[1].latency_ms_avg == 10.0
    assert points[1].latency_ms_p95 is None
    assert points[2].requests == 0


def _epoch_minute(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


def test_minute_rows_give_the_points_named_columns_would() -> None:
    starts = bucket_starts("minute", START, START + timedelta(minutes=5))
    # Every column a different value, so a column read into the wrong field shows.
    stored = {
        starts[3]: {name: 10 * (offset + 1) + 3 for offset, name in enumerate(COUNTERS)}
        | {"latency_ms_sum": 91.0, "latency_ms_max": 40.0},
        starts[-1]: {name: offset + 1 for offset, name in enumerate(COUNTERS)}
        | {"latency_ms_sum": 7.0, "latency_ms_max": 5.0},
        starts[1]: dict.fromkeys(COUNTERS, 0) | {"latency_ms_sum": 0.0, "latency_ms_max": 0.0},
    }
    columns = (*COUNTERS, "latency_ms_sum", "latency_ms_max")
    # In the statement's column order, bucket first; any row order.
    rows = [
        (int(start.timestamp()) // 60, *(row[name] for name in columns))
        for start, row in stored.items()
    ]
    points = minute_points(starts, rows)
    assert points == zero_filled(starts, stored.items())
    assert points[3].status_2xx == 23
    assert points[3].bytes_out == 93
    assert points[3].latency_ms_avg == 91.0 / 13
    assert points[-1].requests == 1
    assert points[1] == UsagePoint(start=starts[1])  # a stored row without calls: no latency
    assert minute_points(starts, []) == [UsagePoint(start=start) for start in starts]
