"""Event models carried on the topics; msgspec validates them on decode."""

from datetime import datetime

import msgspec
import uuid_utils


def new_event_id() -> str:
    """A UUIDv7: unique, and sortable by creation time."""
    return str(uuid_utils.uuid7())


class RequestEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One call through the gateway (the data of a `capps.requests.v1` CloudEvent)."""

    id: str
    time: datetime
    tenant_id: str
    app_id: str
    method: str
    route: str
    status: int
    latency_ms: float
    bytes_in: int
    bytes_out: int
    request_id: str
    gateway: str
