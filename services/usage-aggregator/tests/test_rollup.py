"""Unit tests of the pure batch arithmetic: decoding, watermarks, counters."""

from datetime import UTC, date, datetime, timedelta, timezone

from capps_aggregator.rollup import (
    PositionedEvent,
    SourceRecord,
    by_partition,
    decode_batch,
    partition_ranges,
    rollup,
)
from capps_events import RequestEvent, encode_request

T0 = datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC)


def event(app: str, moment: datetime, tenant: str = "t1") -> RequestEvent:
    return RequestEvent(
        id=f"{app}-{moment.isoformat()}",
        time=moment,
        tenant_id=tenant,
        app_id=app,
        method="GET",
        route="/api/alerts",
        status=200,
        latency_ms=1.5,
        bytes_in=0,
        bytes_out=12,
        request_id="r",
        gateway="gw-1",
    )


def at(partition: int, offset: int, item: RequestEvent | None) -> PositionedEvent:
    return PositionedEvent(partition, offset, item)


def test_counts_per_minute_day_and_last_seen_across_midnight() -> None:
    late = T0 + timedelta(seconds=45)  # 00:00:15 the next day
    batch = [
        at(0, 0, event("a", T0)),
        at(0, 1, event("a", T0 + timedelta(seconds=10))),
        at(0, 2, event("a", late)),
        at(1, 7, event("b", T0, tenant="t2")),
    ]
    result = rollup(batch, {})
    minute = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    assert result.minutes == {
        ("a", minute): 2,
        ("a", datetime(2026, 3, 2, 0, 0, tzinfo=UTC)): 1,
        ("b", minute): 1,
    }
    assert result.days == {
        ("a", date(2026, 3, 1)): 2,
        ("a", date(2026, 3, 2)): 1,
        ("b", date(2026, 3, 1)): 1,
    }
    assert result.last_seen == {"a": late, "b": T0}
    assert result.tenants == {"a": "t1", "b": "t2"}
    assert result.next_offsets == {0: 3, 1: 8}
    assert (result.counted, result.skipped) == (4, 0)


def test_events_below_the_watermark_are_skipped() -> None:
    batch = [at(0, offset, event("a", T0)) for offset in range(5)] + [at(1, 3, event("a", T0))]
    result = rollup(batch, {0: 3, 1: 4})
    assert result.counted == 2
    assert result.skipped == 4
    assert result.next_offsets == {0: 5}
    assert sum(result.minutes.values()) == 2


def test_rolling_against_the_advanced_watermark_adds_nothing() -> None:
    batch = [at(2, offset, event("a", T0)) for offset in range(10, 20)]
    first = rollup(batch, {})
    again = rollup(batch, first.next_offsets)
    assert again.empty
    assert again.counted == 0
    assert again.skipped == 10


def test_a_dead_lettered_record_advances_the_watermark_without_counting() -> None:
    result = rollup([at(0, 4, event("a", T0)), at(0, 5, None)], {})
    assert result.counted == 1
    assert result.next_offsets == {0: 6}


def test_non_utc_times_land_in_their_utc_buckets() -> None:
    plus_two = datetime(2026, 3, 1, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    result = rollup([at(0, 0, event("a", plus_two))], {})
    assert list(result.minutes) == [("a", datetime(2026, 3, 1, 1, 30, tzinfo=UTC))]
    assert list(result.days) == [("a", date(2026, 3, 1))]


def test_decode_batch_separates_garbage_and_keeps_its_position() -> None:
    good = encode_request(event("a", T0), "test")
    records = [
        SourceRecord(0, 10, good.key, good.value, good.headers),
        SourceRecord(0, 11, b"k", b"not json", [("ce_type", b"other")]),
        SourceRecord(0, 12, None, None, []),
    ]
    positioned, rejected = decode_batch(records)
    assert [item.event is not None for item in positioned] == [True, False, False]
    assert [r.record.offset for r in rejected] == [11, 12]
    assert "ce_type" in rejected[0].reason
    assert rollup(positioned, {}).next_offsets == {0: 13}


def test_partition_helpers() -> None:
    batch = [at(1, 5, None), at(0, 2, None), at(1, 3, None), at(0, 9, None)]
    assert partition_ranges(batch) == {1: (3, 6), 0: (2, 10)}
    assert {p: [i.offset for i in items] for p, items in by_partition(batch).items()} == {
        1: [5, 3],
        0: [2, 9],
    }
