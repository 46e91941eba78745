"""Aggregator rates leave the first batch out; the bench's database sits beside the real one."""

from datetime import UTC, datetime, timedelta

from bench.aggregator import database_url_named, rate_after_first
from bench.aggregator_produce import bench_events


def test_rate_counts_events_after_the_first_batch() -> None:
    assert rate_after_first(100_000, 10_000, 5.0, 8.0) == 30_000.0
    assert rate_after_first(100, 100, 5.0, 5.0) == 0.0


def test_database_url_keeps_server_and_credentials() -> None:
    url = database_url_named("postgresql://capps:capps@127.0.0.1:5432/capps", "capps_agg_bench_1")
    assert url == "postgresql://capps:capps@127.0.0.1:5432/capps_agg_bench_1"


def test_events_spread_over_apps_and_ten_minutes() -> None:
    now = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
    events = bench_events(1_200, ["a", "b", "c"], now)
    assert len({event.id for event in events}) == 1_200
    assert {event.app_id for event in events} == {"a", "b", "c"}
    assert min(event.time for event in events) == now - timedelta(seconds=599)
