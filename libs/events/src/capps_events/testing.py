"""A valid request event for tests and benchmarks, with only what a case cares about changed."""

from datetime import UTC, datetime
from typing import Any

import msgspec

from capps_events.models import RequestEvent, new_event_id


def request_event(**overrides: Any) -> RequestEvent:
    """A request event that passes validation now; `overrides` set any of its fields."""
    base = RequestEvent(
        id=new_event_id(),
        time=datetime.now(UTC),
        tenant_id="t1",
        app_id="app-1",
        method="GET",
        route="/api/alerts",
        status=200,
        latency_ms=1.5,
        bytes_in=0,
        bytes_out=0,
        request_id=new_event_id(),
        gateway="gw-1",
    )
    return msgspec.structs.replace(base, **overrides)
