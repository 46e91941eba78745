"""Bucket arithmetic: windows, fields and the trailing-24h sum."""

from datetime import UTC, date, datetime

from capps_usage.keys import hour_key, minute_field, minute_floor, trailing_hours, trend_days
from capps_usage.stats import sum_trailing_minutes

NOW = datetime(2026, 11, 27, 10, 30, 15, tzinfo=UTC)


def test_minute_floor_and_fields() -> None:
    minute = minute_floor(NOW)
    assert minute == datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
    assert hour_key("a1", minute) == "capps:usage:a1:m:2026112710"
    assert minute_field(minute) == "30"


def test_trailing_hours_cover_25_hour_buckets_oldest_first() -> None:
    hours = trailing_hours(NOW)
    assert len(hours) == 25
    assert hours[0] == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert hours[-1] == datetime(2026, 11, 27, 10, tzinfo=UTC)


def test_trend_days_end_today_oldest_first() -> None:
    days = trend_days(NOW)
    assert len(days) == 30
    assert days[-1] == date(2026, 11, 27)
    assert days[0] == date(2026, 10, 29)


def test_trailing_sum_counts_only_the_last_24_hours() -> None:
    hours = trailing_hours(NOW)
    hashes: list[dict[bytes, bytes]] = [{} for _ in hours]
    hashes[0] = {b"29": b"5", b"30": b"7", b"31": b"11"}  # 24 h ago: 10:29 out, 10:30 and 10:31 in
    hashes[-1] = {b"30": b"3", b"31": b"100"}  # 10:31 today is in the future
    assert sum_trailing_minutes(hours, hashes, NOW) == 7 + 11 + 3
