"""Trace context on events: carried as `ce_traceparent`/`ce_tracestate`, malformed ones ignored."""

import pytest

from capps_events import (
    TraceContext,
    decode_request,
    encode_request,
    parse_traceparent,
    trace_context,
)
from capps_events.testing import request_event
from capps_events.tracecontext import sane_tracestate

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_an_encoded_event_carries_its_trace_context_as_cloudevents_headers() -> None:
    context = TraceContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 1, "ven=t61r")
    record = encode_request(request_event(), "s", context)
    headers = dict(record.headers)
    assert headers["ce_traceparent"] == TRACEPARENT.encode()
    assert headers["ce_tracestate"] == b"ven=t61r"
    assert trace_context(record.headers) == context


def test_an_event_without_trace_context_has_no_trace_headers() -> None:
    record = encode_request(request_event(), "s")
    assert not {"ce_traceparent", "ce_tracestate"} & {name for name, _ in record.headers}
    assert trace_context(record.headers) is None


def test_the_traceparent_of_the_w3c_example_parses() -> None:
    context = parse_traceparent(TRACEPARENT.encode())
    assert context is not None
    assert context.traceparent == TRACEPARENT
    assert context.sampled
    assert context.tracestate is None


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"garbage",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 has 4 fields
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\x00",
        b"\xff\xfe" * 40,
    ],
)
def test_a_malformed_traceparent_is_no_context(value: bytes) -> None:
    assert parse_traceparent(value) is None


def test_a_future_version_is_read_by_its_first_four_fields() -> None:
    context = parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what")
    assert context is not None
    assert context.span_id == 0x00F067AA0BA902B7


@pytest.mark.parametrize(
    "value",
    ["", "x" * 600, "Upper=1", "a=1,=2", "a=1,b", "a=,b=1", "a=1\x00", ",".join(["k=v"] * 33)],
)
def test_a_malformed_tracestate_is_dropped_alone(value: str) -> None:
    assert sane_tracestate(value) is None
    context = parse_traceparent(TRACEPARENT, value)
    assert context is not None
    assert context.tracestate is None


def test_a_tracestate_of_several_members_is_kept() -> None:
    assert sane_tracestate("congo=t61rcWkgMzE, rojo@vendor=00f067aa0ba902b7") == (
        "congo=t61rcWkgMzE,rojo@vendor=00f067aa0ba902b7"
    )


@pytest.mark.parametrize(
    "traceparent", [b"not-a-traceparent", b"\xff" * 300, b"", TRACEPARENT.encode()[:-1]]
)
def test_a_malformed_traceparent_never_stops_an_otherwise_good_event(traceparent: bytes) -> None:
    event = request_event()
    record = encode_request(event, "s")
    headers = [*record.headers, ("ce_traceparent", traceparent), ("ce_tracestate", b"\x00")]
    assert decode_request(record.value, headers) == event
    assert trace_context(headers) is None
