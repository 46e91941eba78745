"""Bytes <-> model for Kafka records, per the CloudEvents 1.0 Kafka binding in binary mode.

The CloudEvents attributes travel as `ce_*` headers and the record value is the JSON data,
so consumers can route on headers without parsing the body.
"""

from dataclasses import dataclass
from datetime import UTC

import msgspec

from capps_events.models import RequestEvent

SPEC_VERSION = b"1.0"
REQUEST_EVENT_TYPE = "dev.connectedapps.request.v1"
CONTENT_TYPE = b"application/json"

Headers = list[tuple[str, bytes]]

_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(RequestEvent)


class DecodeError(ValueError):
    """A record that is not a valid event of the expected type; the message says why."""


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What a producer sends: key, value and headers."""

    key: bytes
    value: bytes
    headers: Headers


def encode_request(event: RequestEvent, source: str) -> KafkaRecord:
    """Encode a request event, keyed by app id so one app's events stay ordered."""
    return KafkaRecord(
        key=event.app_id.encode(),
        value=_encoder.encode(event),
        headers=[
            ("ce_specversion", SPEC_VERSION),
            ("ce_id", event.id.encode()),
            ("ce_source", source.encode()),
            ("ce_type", REQUEST_EVENT_TYPE.encode()),
            ("ce_time", event.time.astimezone(UTC).isoformat().encode()),
            ("content-type", CONTENT_TYPE),
        ],
    )


def decode_request(value: bytes | None, headers: Headers | None) -> RequestEvent:
    """Decode one record of `capps.requests.v1`, or raise DecodeError naming the problem."""
    found = dict(headers or ())
    ce_type = found.get("ce_type")
    if ce_type is None:
        raise DecodeError("missing header ce_type")
    if ce_type.decode(errors="replace") != REQUEST_EVENT_TYPE:
        raise DecodeError(f"unexpected ce_type {ce_type.decode(errors='replace')!r}")
    if found.get("ce_specversion") != SPEC_VERSION:
        raise DecodeError("missing or unsupported ce_specversion")
    if value is None:
        raise DecodeError("empty record value")
    try:
        event = _request_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid event data: {exc}") from None
    if event.time.tzinfo is None:
        raise DecodeError("invalid event data: time has no UTC offset")
    return event
