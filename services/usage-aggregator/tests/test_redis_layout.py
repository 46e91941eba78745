"""Unit tests of how a partition's counters are laid out for the Redis script, and DLQ headers."""

from datetime import UTC, datetime

from capps_aggregator.dlq import DETAIL_HEADER, REASON_HEADER, dead_letter_headers
from capps_aggregator.rollup import REQUESTS, Rejected, SourceRecord, UsageRollup
from capps_aggregator.sinks.redis import script_call
from capps_usage.keys import HOT_READY_KEY, MINUTE_TTL_S, OFFSETS_KEY

NOW = datetime(2026, 3, 2, tzinfo=UTC).timestamp()


def _row(requests: int) -> list[float]:
    row: list[float] = [0] * 11
    row[REQUESTS] = requests
    return row


def test_script_call_lays_out_keys_and_arguments() -> None:
    minute = int(datetime(2026, 3, 1, 10, 42, tzinfo=UTC).timestamp()) // 60
    seen = datetime(2026, 3, 1, 10, 42, 17, 250000, tzinfo=UTC).timestamp()
    counters = UsageRollup(
        minutes={("a", minute): _row(3)},
        days={("a", minute // 1440): _row(3)},
        tenants={"a": "t"},
        last_seen={"a": seen},
        next_offsets={4: 120},
        counted=3,
    )
    call = script_call("topic", 4, 117, counters, now_s=NOW)
    hour_start = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp())
    assert call.keys == [
        OFFSETS_KEY,
        HOT_READY_KEY,
        "capps:usage:a:m:2026030110",
        "capps:usage:a:d",
        "capps:usage:a:seen",
    ]
    assert call.args == [
        "topic:4",
        117,
        120,
        "2026-01-27",  # 35 days ending 2026-03-02 start here
        1,
        1,
        1,
        "42",
        3,
        hour_start + MINUTE_TTL_S,
        "2026-03-01",
        3,
        1772361737250,  # 2026-03-01T10:42:17.250Z in ms
    ]


def test_buckets_older_than_the_hot_store_keeps_are_left_to_postgres() -> None:
    old_minute = int(NOW) // 60 - 50 * 60  # 50 hours ago: its hour key would be expired
    old_day = int(NOW) // 86400 - 40
    counters = UsageRollup(
        minutes={("a", old_minute): _row(1)},
        days={("a", old_day): _row(1)},
        next_offsets={0: 1},
    )
    call = script_call("topic", 0, 0, counters, now_s=NOW)
    assert call.keys == [OFFSETS_KEY, HOT_READY_KEY]
    assert call.args[4:7] == [0, 0, 0]


def test_dead_letter_headers_keep_the_originals_and_add_the_reason() -> None:
    record = SourceRecord(1, b"k", b"v", [("ce_type", b"x")])
    headers = dead_letter_headers(Rejected(0, record, "undecodable", "unexpected ce_type 'x'"))
    assert headers == [
        ("ce_type", b"x"),
        (REASON_HEADER, b"undecodable"),
        (DETAIL_HEADER, b"unexpected ce_type 'x'"),
    ]
