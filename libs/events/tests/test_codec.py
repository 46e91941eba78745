"""The codec round-trips events and refuses records that are not request events."""

from datetime import UTC, datetime, timedelta, timezone
from importlib import resources

import msgspec
import pytest

from capps_events import (
    AppState,
    DecodeError,
    RateLimit,
    RequestEvent,
    decode_app_state,
    decode_request,
    encode_app_deleted,
    encode_app_state,
    encode_request,
    new_event_id,
    normalise_issuer,
)
from capps_events.codec import rfc3339
from capps_events.testing import request_event

GOLDEN = resources.files("capps_events") / "samples" / "request_event.json"


def _event() -> RequestEvent:
    return request_event(
        time=datetime(2026, 11, 27, 10, 15, 30, tzinfo=UTC), bytes_out=10, request_id="r1"
    )


def test_round_trip_keeps_every_field_and_keys_by_app() -> None:
    event = _event()
    record = encode_request(event, source="/gateway/gw-1")
    assert record.key == b"app-1"
    assert decode_request(record.value, record.headers) == event


def test_headers_follow_cloudevents_binary_mode() -> None:
    event = _event()
    headers = dict(encode_request(event, source="/gateway/gw-1").headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == event.id.encode()
    assert headers["ce_source"] == b"/gateway/gw-1"
    assert headers["ce_time"] == b"2026-11-27T10:15:30Z"


def test_ce_time_is_rfc3339_in_utc_whatever_the_offset() -> None:
    moment = datetime(2026, 11, 27, 11, 15, 30, 250000, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339(moment) == b"2026-11-27T10:15:30.250000Z"
    assert datetime.fromisoformat(rfc3339(moment).decode()) == moment


def test_golden_sample_decodes() -> None:
    headers = encode_request(_event(), source="s").headers
    event = decode_request(GOLDEN.read_bytes(), headers)
    assert event.route == "/api/alerts/{id}"
    assert event.time.tzinfo is not None


def test_event_ids_are_uuid7_and_sortable() -> None:
    first, second = new_event_id(), new_event_id()
    assert first[14] == "7"
    assert first <= second


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"{}", [], "missing header ce_type"),
        (b"{}", [("ce_type", b"other"), ("ce_specversion", b"1.0")], "unexpected ce_type"),
        (b"{}", [("ce_type", b"dev.connectedapps.request.v1")], "ce_specversion"),
        (
            b"not json",
            [("ce_type", b"dev.connectedapps.request.v1"), ("ce_specversion", b"1.0")],
            "invalid event data",
        ),
        (
            b'{"id": "x"}',
            [("ce_type", b"dev.connectedapps.request.v1"), ("ce_specversion", b"1.0")],
            "invalid event data",
        ),
    ],
)
def test_bad_records_raise_decode_error_with_reason(
    value: bytes, headers: list[tuple[str, bytes]], reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_request(value, headers)


def _state(version: int = 3) -> AppState:
    return AppState(
        app_id="app-1",
        tenant_id="t1",
        enabled=True,
        permissions=["Alert.Read.All"],
        rate_limit=RateLimit(per_minute=100, per_hour=1500),
        tokens_valid_after=datetime(2026, 11, 27, 9, tzinfo=UTC),
        version=version,
        updated_at=datetime(2026, 11, 27, 10, tzinfo=UTC),
    )


def test_app_state_round_trips_keyed_by_app() -> None:
    record = encode_app_state(_state(), source="/registry")
    assert record.key == b"app-1"
    assert dict(record.headers)["ce_type"] == b"dev.connectedapps.app.v1"
    assert dict(record.headers)["ce_id"] == b"app-1:3"
    assert decode_app_state(record.key, record.value) == ("app-1", _state())


def test_external_app_state_carries_its_issuer_and_older_records_read_as_none() -> None:
    external = msgspec.structs.replace(_state(), issuer="https://idp.example/tenant")
    record = encode_app_state(external, source="/registry")
    assert decode_app_state(record.key, record.value) == ("app-1", external)
    older = msgspec.json.decode(encode_app_state(_state(), source="/registry").value or b"")
    older.pop("issuer", None)
    assert decode_app_state(b"app-1", msgspec.json.encode(older)) == ("app-1", _state())


def test_issuers_compare_without_trailing_slashes() -> None:
    assert normalise_issuer("https://idp.example/t/") == "https://idp.example/t"
    assert normalise_issuer("https://idp.example/t") == "https://idp.example/t"


def test_deleted_app_is_a_tombstone() -> None:
    record = encode_app_deleted("app-1", 4, datetime(2026, 11, 27, tzinfo=UTC), source="/registry")
    assert record.value is None
    assert dict(record.headers)["ce_type"] == b"dev.connectedapps.app.deleted.v1"
    assert decode_app_state(record.key, record.value) == ("app-1", None)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b"{}", "without a key"),
        (b"app-1", b"{}", "invalid app state"),
        (b"app-2", encode_app_state(_state(), source="s").value, "under key 'app-2'"),
    ],
)
def test_bad_app_state_records_raise(key: bytes | None, value: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_app_state(key, value)
