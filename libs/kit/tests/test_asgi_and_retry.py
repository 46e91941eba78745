"""The shared error body and the shared backoff rule."""

import orjson

from capps_kit.asgi import error_body, error_payload
from capps_kit.retry import backoff_delay


def test_the_error_body_names_code_message_and_request_id() -> None:
    assert orjson.loads(error_body("not_found", "no route GET /x", "req-1")) == {
        "error": {"code": "not_found", "message": "no route GET /x", "target": "req-1"}
    }
    assert error_payload("invalid_body", "not JSON", None)["error"]["target"] is None


def test_backoff_starts_at_nothing_doubles_and_stays_under_its_cap() -> None:
    assert backoff_delay(0) == 0.0
    assert [backoff_delay(n) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.6]
    assert backoff_delay(50) == 10.0
    assert backoff_delay(10**9) == 10.0
    assert [backoff_delay(n, first_s=0.5, cap_s=5.0) for n in (1, 2, 3, 4, 5)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        5.0,
    ]
