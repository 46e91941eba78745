"""validate_request refuses events outside explicit bounds, naming the reason."""

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from capps_events import InvalidEventError, TimeWindow, validate_request
from capps_events.testing import request_event

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WINDOW = TimeWindow.around(NOW.timestamp(), past_s=400 * 86400, future_s=300)
# Ids shaped as in production: UUIDs and a registry app id.
GOOD = request_event(
    id="01936f3e-7c2a-7b3c-9d4e-5f6a7b8c9d0e",
    time=NOW,
    tenant_id="0b6f1c1e-6a8f-4f43-9d2a-1f0e7c3b5a11",
    app_id="app_7f3c2a9e4b1d",
    route="/api/alerts/{id}",
    latency_ms=3.25,
    bytes_out=412,
    request_id="6f1d2c3b-aaaa-4bbb-8ccc-123456789abc",
)


def test_a_good_event_passes_and_gives_its_epoch_seconds() -> None:
    assert validate_request(GOOD, WINDOW) == NOW.timestamp()


@pytest.mark.parametrize(
    "moment",
    [
        NOW - timedelta(days=399, hours=23),  # a spool replay from long ago is still counted
        NOW + timedelta(minutes=4),  # clock skew
        datetime(2026, 11, 30, 13, 0, tzinfo=timezone(timedelta(hours=1))),  # = NOW in UTC
    ],
)
def test_late_and_slightly_early_events_pass(moment: datetime) -> None:
    validate_request(msgspec.structs.replace(GOOD, time=moment), WINDOW)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"time": datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(minutes=1439)))},
            "time_out_of_window",
        ),
        ({"time": NOW + timedelta(minutes=6)}, "time_out_of_window"),
        ({"time": NOW - timedelta(days=401)}, "time_out_of_window"),
        ({"status": 99}, "bad_status"),
        ({"status": 600}, "bad_status"),
        ({"method": "get"}, "bad_method"),
        ({"method": "BREW"}, "bad_method"),
        ({"latency_ms": -0.001}, "bad_latency"),
        ({"latency_ms": float("inf")}, "bad_latency"),
        ({"bytes_in": -1}, "bad_size"),
        ({"bytes_out": 1 << 41}, "bad_size"),
        ({"app_id": "a\x00b"}, "bad_id"),
        ({"app_id": ""}, "bad_id"),
        ({"app_id": "x" * 129}, "bad_id"),
        ({"tenant_id": "t:1"}, "bad_id"),
        ({"request_id": "r 1"}, "bad_id"),
        ({"gateway": "é"}, "bad_id"),
        ({"route": "/a\x00"}, "bad_route"),
        ({"route": "/" * 513}, "bad_route"),
    ],
)
def test_events_outside_the_bounds_are_refused_with_a_reason(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidEventError) as refused:
        validate_request(msgspec.structs.replace(GOOD, **changes), WINDOW)
    assert refused.value.reason == reason
