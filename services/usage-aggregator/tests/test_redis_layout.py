"""Unit tests of how a partition's counters are laid out for the Redis script, and DLQ headers."""

from datetime import UTC, date, datetime

from capps_aggregator.dlq import REASON_HEADER, dead_letter_headers
from capps_aggregator.rollup import Rejected, SourceRecord, UsageRollup
from capps_aggregator.sinks.redis import script_call
from capps_usage.keys import MINUTE_TTL_S, OFFSETS_KEY


def test_script_call_lays_out_keys_and_arguments() -> None:
    minute = datetime(2026, 3, 1, 10, 42, tzinfo=UTC)
    seen = datetime(2026, 3, 1, 10, 42, 17, 250000, tzinfo=UTC)
    counters = UsageRollup(
        minutes={("a", minute): 3},
        days={("a", date(2026, 3, 1)): 3},
        tenants={"a": "t"},
        last_seen={"a": seen},
        next_offsets={4: 120},
        counted=3,
    )
    call = script_call("topic", 4, 117, counters, now=datetime(2026, 3, 2, tzinfo=UTC))
    hour_start = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp())
    assert call.keys == [
        OFFSETS_KEY,
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
        int(seen.timestamp() * 1000),
    ]


def test_dead_letter_headers_keep_the_originals_and_add_the_reason() -> None:
    record = SourceRecord(0, 1, b"k", b"v", [("ce_type", b"x")])
    headers = dead_letter_headers(Rejected(record, "unexpected ce_type 'x'"))
    assert headers == [("ce_type", b"x"), (REASON_HEADER, b"unexpected ce_type 'x'")]
