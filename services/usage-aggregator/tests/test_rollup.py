"""Unit tests of the pure batch arithmetic: decoding, validation, watermarks, counters."""

import time
from datetime import UTC, date, datetime, timedelta, timezone

from capps_aggregator.rollup import (
    BYTES_IN,
    BYTES_OUT,
    DENIED,
    LAT_MAX,
    LAT_SUM,
    REQUESTS,
    S2XX,
    S4XX,
    S5XX,
    THROTTLED,
    PartitionBatch,
    SourceRecord,
    decode_batch,
    merge,
    roll_partitions,
    rollup,
)
from capps_events import RequestEvent, TimeWindow, encode_request
from capps_events.testing import request_event
from capps_usage.latency import BUCKET_COUNT, bucket_index

T0 = datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC)
WIDE = TimeWindow(0.0, 4_000_000_000.0)


def minute_of(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


def day_of(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def event(app: str, moment: datetime, tenant: str = "t1", **changes: object) -> RequestEvent:
    fields: dict[str, object] = {"id": f"{app}-{moment.isoformat()}", "bytes_out": 12}
    return request_event(
        **{**fields, "time": moment, "tenant_id": tenant, "app_id": app, **changes}
    )


def batch(partition: int, first: int, events: list[RequestEvent | None]) -> PartitionBatch:
    offsets = list(range(first, first + len(events)))
    records = [SourceRecord(offset, None, None) for offset in offsets]
    seconds = [item.time.timestamp() if item is not None else 0.0 for item in events]
    return PartitionBatch(partition, records, offsets, list(events), seconds)


def test_counts_per_minute_day_and_last_seen_across_midnight() -> None:
    late = T0 + timedelta(seconds=45)  # 00:00:15 the next day
    result = rollup(
        [
            batch(0, 0, [event("a", T0), event("a", T0 + timedelta(seconds=10)), event("a", late)]),
            batch(1, 7, [event("b", T0, tenant="t2")]),
        ],
        {},
    )
    minute = minute_of(T0)
    assert {key: row[REQUESTS] for key, row in result.minutes.items()} == {
        ("a", minute): 2,
        ("a", minute + 1): 1,
        ("b", minute): 1,
    }
    assert {key: row[REQUESTS] for key, row in result.days.items()} == {
        ("a", day_of(date(2026, 3, 1))): 2,
        ("a", day_of(date(2026, 3, 2))): 1,
        ("b", day_of(date(2026, 3, 1))): 1,
    }
    assert result.last_seen == {"a": late.timestamp(), "b": T0.timestamp()}
    assert result.tenants == {"a": "t1", "b": "t2"}
    assert result.next_offsets == {0: 3, 1: 8}
    assert (result.counted, result.skipped) == (4, 0)


def test_breakdowns_by_status_latency_bytes_and_route() -> None:
    calls = [
        event("a", T0, status=200, latency_ms=4.0, bytes_in=10, bytes_out=100),
        event("a", T0, status=401, latency_ms=1.0, route="/api/machines"),
        event("a", T0, status=403, latency_ms=1.0),
        event("a", T0, status=429, latency_ms=0.5),
        event("a", T0, status=503, latency_ms=250.0, method="POST"),
        event("a", T0, status=101, latency_ms=0.1),
    ]
    result = rollup([batch(0, 0, list(calls))], {})
    row = result.minutes["a", minute_of(T0)]
    assert row[REQUESTS] == 6
    assert (row[S2XX], row[S4XX], row[S5XX]) == (1, 3, 1)
    assert (row[DENIED], row[THROTTLED]) == (2, 1)
    assert (row[BYTES_IN], row[BYTES_OUT]) == (10, 100 + 5 * 12)
    assert row[LAT_SUM] == 4.0 + 1.0 + 1.0 + 0.5 + 250.0 + 0.1
    assert row[LAT_MAX] == 250.0
    assert result.days["a", day_of(date(2026, 3, 1))] == row
    hist = result.day_latency["a", day_of(date(2026, 3, 1))]
    assert len(hist) == BUCKET_COUNT
    assert sum(hist) == 6
    assert hist[bucket_index(250.0)] == 1
    day = day_of(date(2026, 3, 1))
    assert result.routes == {
        ("a", day, "GET", "/api/alerts"): [4, 2],
        ("a", day, "GET", "/api/machines"): [1, 1],
        ("a", day, "POST", "/api/alerts"): [1, 1],
    }


def test_events_below_the_watermark_are_skipped() -> None:
    result = rollup(
        [batch(0, 0, [event("a", T0)] * 5), batch(1, 3, [event("a", T0)])], {0: 3, 1: 4}
    )
    assert result.counted == 2
    assert result.skipped == 4
    assert result.next_offsets == {0: 5}
    assert sum(row[REQUESTS] for row in result.minutes.values()) == 2


def test_rolling_against_the_advanced_watermark_adds_nothing() -> None:
    items = [batch(2, 10, [event("a", T0)] * 10)]
    first = rollup(items, {})
    again = rollup(items, first.next_offsets)
    assert again.empty
    assert again.counted == 0
    assert again.skipped == 10


def test_a_dead_lettered_record_advances_the_watermark_without_counting() -> None:
    result = rollup([batch(0, 4, [event("a", T0), None])], {})
    assert result.counted == 1
    assert result.next_offsets == {0: 6}


def test_non_utc_times_land_in_their_utc_buckets() -> None:
    plus_two = datetime(2026, 3, 1, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    result = rollup([batch(0, 0, [event("a", plus_two)])], {})
    assert list(result.minutes) == [("a", minute_of(datetime(2026, 3, 1, 1, 30, tzinfo=UTC)))]
    assert list(result.days) == [("a", day_of(date(2026, 3, 1)))]


def test_merging_partitions_equals_rolling_them_together() -> None:
    parts = [
        batch(0, 0, [event("a", T0, latency_ms=3.0), event("b", T0, status=500)]),
        batch(1, 0, [event("a", T0, latency_ms=9.0), None, event("a", T0 + timedelta(days=1))]),
    ]
    together = rollup(parts, {})
    merged = merge(part.counters for part in roll_partitions(parts))
    assert merged.minutes == together.minutes
    assert merged.days == together.days
    assert merged.day_latency == together.day_latency
    assert merged.routes == together.routes
    assert merged.last_seen == together.last_seen
    assert merged.next_offsets == together.next_offsets
    assert merged.counted == together.counted == 4


def test_a_rolled_partition_rerolls_only_above_a_watermark_inside_it() -> None:
    (part,) = roll_partitions([batch(3, 100, [event("a", T0)] * 10)])
    assert part.above(100) is part.counters
    above = part.above(107)
    assert (above.counted, above.skipped) == (3, 7)
    assert part.above(110).empty


def test_decode_batch_separates_garbage_and_keeps_its_position() -> None:
    good = encode_request(event("a", T0), "test")
    records = [
        SourceRecord(10, good.key, good.value, good.headers),
        SourceRecord(11, b"k", b"not json", [("ce_type", b"other")]),
        SourceRecord(12, None, None, []),
    ]
    batches, rejected = decode_batch({0: records}, WIDE)
    assert [item is not None for item in batches[0].events] == [True, False, False]
    assert [r.record.offset for r in rejected] == [11, 12]
    assert rejected[0].reason == "undecodable"
    assert "ce_type" in rejected[0].detail
    assert rollup(batches, {}).next_offsets == {0: 13}


def test_decode_refuses_events_outside_the_window_with_their_reason() -> None:
    now = time.time()
    window = TimeWindow.around(now, past_s=400 * 86400, future_s=300)
    fresh = datetime.fromtimestamp(now, UTC)
    records = [
        encode_request(event("a", fresh), "t"),
        encode_request(event("a", fresh + timedelta(hours=1)), "t"),
        encode_request(event("a", fresh - timedelta(days=401)), "t"),
        encode_request(event("a", fresh - timedelta(days=399)), "t"),
    ]
    consumed = [SourceRecord(i, r.key, r.value, r.headers) for i, r in enumerate(records)]
    batches, rejected = decode_batch({5: consumed}, window)
    assert [r.record.offset for r in rejected] == [1, 2]
    assert {r.reason for r in rejected} == {"time_out_of_window"}
    assert rollup(batches, {}).counted == 2
