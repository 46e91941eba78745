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


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    """An app's call limits."""

    per_minute: int
    per_hour: int


class AppState(msgspec.Struct, frozen=True, kw_only=True):
    """The current state of one app (the data of a `capps.apps.v1` CloudEvent, key = app id).

    The topic is compacted: the latest record per app is its state, and a tombstone (a record
    with no value) means the app was deleted. Gateways keep the latest state of every app.
    """

    app_id: str
    tenant_id: str
    enabled: bool
    permissions: list[str]
    rate_limit: RateLimit
    tokens_valid_after: datetime
    """Tokens issued (`iat`) before this moment are refused: set when the app is disabled."""
    version: int
    """Grows with every change of the app; a consumer ignores a state older than it holds."""
    updated_at: datetime
    issuer: str | None = None
    """The external identity provider whose tokens act for this app (its issuer URL without a
    trailing slash, see `normalise_issuer`); None for an app of the registry's own tokens."""


def token_predates(issued_at: object, tokens_valid_after: datetime) -> bool:
    """Whether a token issued at `issued_at` (its `iat`) is revoked by `tokens_valid_after`.

    The one rule the registry (introspection, refresh) and the gateway both apply. Exact, in
    epoch seconds: the registry stamps `iat` with milliseconds and the cut-off is the moment
    of the change. A whole-second `iat` is compared as it stands, so a token issued in the
    second of a disable (before or after it) is revoked: fail closed, the caller takes a new
    token. Anything but a number (missing, a string, a boolean) counts as revoked.
    """
    if not isinstance(issued_at, int | float) or isinstance(issued_at, bool):
        return True
    return issued_at < tokens_valid_after.timestamp()


def normalise_issuer(issuer: str) -> str:
    """An issuer URL as apps and gateways compare it: without trailing slashes."""
    return issuer.rstrip("/")
