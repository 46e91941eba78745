"""Bounds a decoded request event must lie within before anyone counts it.

A record can carry well-formed JSON that no consumer should act on: a time in year 9999 (which
overflows bucket arithmetic and would pin `last_seen`), a NUL in an id (PostgreSQL refuses
text with NUL), a negative size, an impossible status. Consumers call `validate_request` right
after `decode_request` and dead-letter what it refuses; each refusal carries a short `reason`
(a metrics label) and a message naming the field.
"""

import math
import re
from dataclasses import dataclass

from capps_events.codec import DecodeError
from capps_events.models import RequestEvent

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
MAX_ID_LENGTH = 128
MAX_ROUTE_LENGTH = 512
MAX_LATENCY_MS = 24 * 3600 * 1000.0
MAX_BYTES = 1 << 40  # 1 TiB per call: far above any real body, far below bigint sums

# App and tenant ids name Redis keys and table rows: letters, digits and a few separators.
_OWNER_ID = re.compile(rf"[A-Za-z0-9._~-]{{1,{MAX_ID_LENGTH}}}")
# Other ids (event, request, gateway instance) only need to be printable ASCII.
_PRINTABLE_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_ID_LENGTH}}}")
_KNOWN_GOOD: set[tuple[str, str, str, str]] = set()
_KNOWN_GOOD_MAX = 100_000
_ROUTE = re.compile(rf"[\x21-\x7e]{{1,{MAX_ROUTE_LENGTH}}}")


class InvalidEventError(DecodeError):
    """A decoded event outside the bounds; `reason` is a short label for metrics."""


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Event times accepted, as epoch seconds: [not_before, not_after]."""

    not_before: float
    not_after: float

    @classmethod
    def around(cls, now_s: float, past_s: float, future_s: float) -> "TimeWindow":
        """The window reaching `past_s` back and `future_s` ahead of `now_s`."""
        return cls(now_s - past_s, now_s + future_s)


def validate_request(event: RequestEvent, window: TimeWindow) -> float:
    """Raise InvalidEvent when `event` is out of bounds; return its time in epoch seconds.

    The epoch seconds are returned because the caller buckets by them; computing them here
    once is also what proves the time is arithmetic-safe.
    """
    moment = event.time.timestamp()
    if not window.not_before <= moment <= window.not_after:
        raise InvalidEventError(
            "time_out_of_window", f"time {event.time.isoformat()} outside window"
        )
    if not 100 <= event.status <= 599:
        raise InvalidEventError("bad_status", f"status {event.status} not within 100..599")
    if event.method not in HTTP_METHODS:
        raise InvalidEventError("bad_method", f"method {event.method[:16]!r} is not an HTTP method")
    if not (math.isfinite(event.latency_ms) and 0.0 <= event.latency_ms <= MAX_LATENCY_MS):
        raise InvalidEventError("bad_latency", f"latency_ms {event.latency_ms} out of bounds")
    if not (0 <= event.bytes_in <= MAX_BYTES and 0 <= event.bytes_out <= MAX_BYTES):
        raise InvalidEventError("bad_size", "bytes_in/bytes_out negative or too large")
    # App, tenant, gateway and route repeat across events: a combination checked once is
    # remembered, which spares the regular expressions on the hot path.
    combination = (event.app_id, event.tenant_id, event.gateway, event.route)
    if combination not in _KNOWN_GOOD:
        for name, value, pattern in (
            ("app_id", event.app_id, _OWNER_ID),
            ("tenant_id", event.tenant_id, _OWNER_ID),
            ("gateway", event.gateway, _PRINTABLE_ID),
            ("route", event.route, _ROUTE),
        ):
            if not pattern.fullmatch(value):
                reason = "bad_route" if name == "route" else "bad_id"
                raise InvalidEventError(reason, f"{name} has an unexpected length or character")
        if len(_KNOWN_GOOD) >= _KNOWN_GOOD_MAX:
            _KNOWN_GOOD.clear()
        _KNOWN_GOOD.add(combination)
    for name, value in (("id", event.id), ("request_id", event.request_id)):
        if not _PRINTABLE_ID.fullmatch(value):
            raise InvalidEventError("bad_id", f"{name} has an unexpected length or character")
    return moment
