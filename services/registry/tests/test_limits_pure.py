"""Pure parts of the limits: throttle windows, Retry-After, bidi refusal, cursors."""

import pytest

from capps_registry.oauth.throttle import WINDOW_S, retry_after, window_keys
from capps_registry.pagination import BadCursorError, decode_cursor, encode_cursor
from capps_registry.text import refuse_bidi_controls


def test_window_keys_name_the_address_and_the_client_of_this_window() -> None:
    keys = window_keys("app-1", "203.0.113.9", 120.5)
    assert keys == [
        "capps:registry:authfail:addr:203.0.113.9:2",
        "capps:registry:authfail:client:app-1:2",
    ]
    assert window_keys(None, "203.0.113.9", 179.9) == ["capps:registry:authfail:addr:203.0.113.9:2"]
    assert window_keys("app-1", "a", 180.0)[0].endswith(":3")


def test_retry_after_is_the_rest_of_the_window() -> None:
    assert retry_after(120.0) == WINDOW_S
    assert retry_after(179.2) == 1
    assert retry_after(150.0) == 30


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
