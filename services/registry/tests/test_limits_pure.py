"""Pure parts of the limits: throttle logs and lockouts, bidi refusal, cursors."""

import pytest

from capps_registry.oauth.throttle import failure_keys, lockout_keys, seconds_left
from capps_registry.pagination import BadCursorError, decode_cursor, encode_cursor
from capps_registry.text import refuse_bidi_controls


def test_failure_logs_name_the_address_and_the_client() -> None:
    assert failure_keys("app-1", "203.0.113.9") == [
        "capps:registry:authfail:addr:203.0.113.9",
        "capps:registry:authfail:client:app-1",
    ]
    assert failure_keys(None, "203.0.113.9") == ["capps:registry:authfail:addr:203.0.113.9"]


def test_lockouts_name_the_address_and_the_client() -> None:
    assert lockout_keys("app-1", "203.0.113.9") == [
        "capps:registry:authfail:locked:addr:203.0.113.9",
        "capps:registry:authfail:locked:client:app-1",
    ]
    assert lockout_keys(None, "a") == ["capps:registry:authfail:locked:addr:a"]


def test_a_lockout_reports_whole_seconds_left_and_never_zero() -> None:
    assert seconds_left(160.0, 100.0) == 60
    assert seconds_left(160.0, 159.2) == 1
    assert seconds_left(160.0, 170.0) == 1


def test_bidi_controls_are_refused_and_named() -> None:
    assert refuse_bidi_controls("Plain name é 名前") == "Plain name é 名前"
    with pytest.raises(ValueError, match="U\\+202E"):
        refuse_bidi_controls("evil\u202etxt")


def test_cursors_round_trip_and_refuse_other_kinds() -> None:
    cursor = encode_cursor("name", ["Alpha", "id-1"])
    assert decode_cursor("name", cursor) == ["Alpha", "id-1"]
    with pytest.raises(BadCursorError, match="not made for this list"):
        decode_cursor("audit", cursor)
    for bad in ("!!!", "x" * 600, encode_cursor("name", ["x"])[:-3]):
        with pytest.raises(BadCursorError):
            decode_cursor("name", bad)
