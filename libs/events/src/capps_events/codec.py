"""Bytes <-> model for Kafka records, per the CloudEvents 1.0 Kafka binding in binary mode.

The CloudEvents attributes travel as `ce_*` headers and the record value is the JSON data,
so consumers can route on headers without parsing the body.
"""

from datetime import UTC, datetime

import msgspec

from capps_events.models import AppState, RequestEvent
from capps_events.tracecontext import TraceContext, trace_headers

SPEC_VERSION = b"1.0"
REQUEST_EVENT_TYPE = "dev.connectedapps.request.v1"
APP_STATE_EVENT_TYPE = "dev.connectedapps.app.v1"
APP_DELETED_EVENT_TYPE = "dev.connectedapps.app.deleted.v1"
CONTENT_TYPE = b"application/json"

Headers = list[tuple[str, bytes]]

_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(RequestEvent)
_app_state_decoder = msgspec.json.Decoder(AppState)


class DecodeError(ValueError):
    """A record that is not a valid event of the expected type; the message says why.

    `reason` is a short, fixed label (a metrics label and DLQ header), the message the detail.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KafkaRecord(msgspec.Struct, frozen=True, gc=False):
    """What a producer sends: key, value and headers.

    A frozen msgspec Struct rather than a frozen dataclass: the gateway builds one per call,
    and it is built in ~0.4 µs against ~2.3 (measured side by side).
    """

    key: bytes
    value: bytes | None
    headers: Headers


def encode_request(
    event: RequestEvent, source: str, trace: TraceContext | None = None
) -> KafkaRecord:
    """Encode a request event, keyed by app id so one app's events stay ordered.

    `trace`, when given, travels as the distributed tracing extension (`ce_traceparent`,
    `ce_tracestate`): the span that produced the event.
    """
    headers = _headers(event.id, source, REQUEST_EVENT_TYPE, event.time)
    if trace is not None:
        headers += trace_headers(trace)
    return KafkaRecord(key=event.app_id.encode(), value=_encoder.encode(event), headers=headers)


def decode_request(value: bytes | None, headers: Headers | None) -> RequestEvent:
    """Decode one record of `capps.requests.v1`, or raise DecodeError naming the problem."""
    found = dict(headers or ())
    ce_type = found.get("ce_type")
    if ce_type is None:
        raise DecodeError("undecodable", "missing header ce_type")
    if ce_type.decode(errors="replace") != REQUEST_EVENT_TYPE:
        raise DecodeError("undecodable", f"unexpected ce_type {ce_type.decode(errors='replace')!r}")
    if found.get("ce_specversion") != SPEC_VERSION:
        raise DecodeError("undecodable", "missing or unsupported ce_specversion")
    if value is None:
        raise DecodeError("undecodable", "empty record value")
    try:
        event = _request_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise DecodeError("undecodable", f"invalid event data: {exc}") from None
    if event.time.tzinfo is None:
        raise DecodeError("undecodable", "invalid event data: time has no UTC offset")
    return event


def rfc3339(moment: datetime) -> bytes:
    """An aware time as RFC 3339 in UTC (`2026-11-27T10:15:30.250000Z`).

    msgspec's encoder writes it in well under a microsecond; `isoformat()` took ~5 µs, on
    every call through the gateway.
    """
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return _encoder.encode(moment)[1:-1]


def _headers(event_id: str, source: str, event_type: str, time: datetime) -> Headers:
    return [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", event_type.encode()),
        ("ce_time", rfc3339(time)),
        ("content-type", CONTENT_TYPE),
    ]


def encode_app_state(state: AppState, source: str) -> KafkaRecord:
    """Encode the current state of an app, keyed by app id for compaction."""
    event_id = f"{state.app_id}:{state.version}"
    return KafkaRecord(
        key=state.app_id.encode(),
        value=_encoder.encode(state),
        headers=_headers(event_id, source, APP_STATE_EVENT_TYPE, state.updated_at),
    )


def encode_app_deleted(app_id: str, version: int, time: datetime, source: str) -> KafkaRecord:
    """A tombstone: no value, so compaction eventually forgets the app entirely."""
    return KafkaRecord(
        key=app_id.encode(),
        value=None,
        headers=_headers(f"{app_id}:{version}", source, APP_DELETED_EVENT_TYPE, time),
    )


def decode_app_state(key: bytes | None, value: bytes | None) -> tuple[str, AppState | None]:
    """Decode one `capps.apps.v1` record into (app id, state), state None for a tombstone."""
    if not key:
        raise DecodeError("undecodable", "app state record without a key")
    app_id = key.decode(errors="replace")
    if value is None:
        return app_id, None
    try:
        state = _app_state_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise DecodeError("undecodable", f"invalid app state: {exc}") from None
    if state.app_id != app_id:
        raise DecodeError("undecodable", f"app state of {state.app_id!r} under key {app_id!r}")
    return app_id, state
