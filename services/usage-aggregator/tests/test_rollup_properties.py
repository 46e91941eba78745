"""Property: whatever JSON a record carries under valid headers, decode + rollup either
counts it or dead-letters it; nothing raises, nothing is lost, nothing is counted twice."""

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capps_aggregator.rollup import REQUESTS, SourceRecord, decode_batch, merge, roll_partitions
from capps_aggregator.sinks.redis import script_call
from capps_events import TimeWindow, encode_request
from capps_events.codec import REQUEST_EVENT_TYPE
from capps_events.testing import request_event

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WINDOW = TimeWindow.around(NOW.timestamp(), past_s=400 * 86400, future_s=300)
HEADERS = [("ce_type", REQUEST_EVENT_TYPE.encode()), ("ce_specversion", b"1.0")]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
offsets = st.integers(min_value=-23 * 60 + 1, max_value=23 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
times = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
    st.builds(
        lambda moment, zone: moment.replace(tzinfo=zone).isoformat(),
        st.datetimes(),
        offsets,
    ),
    st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]),
    st.datetimes(
        min_value=(NOW - timedelta(days=401)).replace(tzinfo=None),
        max_value=(NOW + timedelta(minutes=10)).replace(tzinfo=None),
        timezones=st.just(UTC),
    ).map(lambda moment: moment.isoformat()),
)
ids = st.one_of(st.text(max_size=140), st.sampled_from(["app-1", "a\x00b", "t1", "", "x" * 129]))
GOOD: dict[str, Any] = {
    "id": "e1",
    "time": NOW.isoformat(),
    "tenant_id": "t1",
    "app_id": "app-1",
    "method": "GET",
    "route": "/api/alerts",
    "status": 200,
    "latency_ms": 1.5,
    "bytes_in": 0,
    "bytes_out": 10,
    "request_id": "r1",
    "gateway": "gw",
}
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": ids,
    "time": times,
    "tenant_id": ids,
    "app_id": ids,
    "method": st.one_of(st.sampled_from(["GET", "POST", "get", "BREW", ""]), st.text(max_size=8)),
    "route": st.one_of(st.text(max_size=600), st.just("/api/alerts/{id}")),
    "status": st.integers(min_value=-(2**65), max_value=2**65),
    "latency_ms": st.one_of(st.floats(allow_nan=False), st.integers(-(2**64), 2**64)),
    "bytes_in": st.integers(min_value=-(2**65), max_value=2**65),
    "bytes_out": st.integers(min_value=-(2**65), max_value=2**65),
    "request_id": ids,
    "gateway": ids,
}


@st.composite
def near_events(draw: st.DrawFn) -> bytes:
    """An event object with some fields replaced by hostile values, some dropped or added."""
    data = dict(GOOD)
    for name in draw(st.sets(st.sampled_from(sorted(GOOD)), max_size=3)):
        # Mostly values of the right JSON type but out of bounds; sometimes any JSON at all.
        data[name] = draw(st.one_of(FIELD_VALUES[name], FIELD_VALUES[name], json_values))
    if draw(st.integers(0, 19)) == 19:
        data.pop(draw(st.sampled_from(sorted(GOOD))))
    return json.dumps(data).encode()


timed_events = times.map(lambda moment: json.dumps({**GOOD, "time": moment}).encode())
values = st.one_of(
    near_events(),
    timed_events,
    near_events(),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=64),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, min_size=1, max_size=25))
def test_each_record_is_counted_or_dead_lettered_never_an_exception(raw: list[bytes]) -> None:
    records = [SourceRecord(offset, b"k", value, HEADERS) for offset, value in enumerate(raw)]
    batches, rejects = decode_batch({0: records}, WINDOW)
    parts = roll_partitions(batches)
    counters = merge(part.counters for part in parts)

    assert counters.counted + len(rejects) == len(records)
    assert counters.next_offsets == {0: len(records)}
    assert sum(row[REQUESTS] for row in counters.minutes.values()) == counters.counted
    assert sum(row[REQUESTS] for row in counters.days.values()) == counters.counted
    assert sum(sum(hist) for hist in counters.day_latency.values()) == counters.counted
    for seen in counters.last_seen.values():
        assert WINDOW.not_before <= seen <= WINDOW.not_after
    for reject in rejects:
        assert reject.reason
    # The Redis layout of what was counted is computable too (it runs in the same batch).
    for part in parts:
        if not part.counters.empty:
            script_call("t", part.batch.partition, 0, part.counters, NOW.timestamp())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_good_events_among_hostile_ones_are_all_counted(pattern: list[bool]) -> None:

    good = encode_request(
        request_event(**{**GOOD, "time": NOW}),
        "test",
    )
    hostile = json.dumps({**GOOD, "time": "9999-12-31T23:59:59-23:59"}).encode()
    records = [
        SourceRecord(offset, b"k", good.value if is_good else hostile, HEADERS)
        for offset, is_good in enumerate(pattern)
    ]
    batches, rejects = decode_batch({0: records}, WINDOW)
    counters = merge(part.counters for part in roll_partitions(batches))
    assert counters.counted == sum(pattern)
    assert [r.record.offset for r in rejects] == [i for i, ok in enumerate(pattern) if not ok]
    assert {r.reason for r in rejects} <= {"time_out_of_window"}
