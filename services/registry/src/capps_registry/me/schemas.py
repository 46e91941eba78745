"""Response body of the partner self-view."""

from datetime import datetime

from pydantic import BaseModel

from capps_registry.apps.schemas import DayRequests, RateLimit


class Headroom(BaseModel):
    """Calls left in the current UTC minute and hour, and when each window starts afresh."""

    minute_remaining: int
    minute_resets_at: datetime
    hour_remaining: int
    hour_resets_at: datetime
    source: str
    """Where the counts come from; the gateway's own counters decide a 429."""


class MeOut(BaseModel):
    """An app as it sees itself."""

    id: str
    name: str
    description: str
    enabled: bool
    permissions: list[str]
    rate_limit: RateLimit
    headroom: Headroom
    last_seen: datetime | None
    requests_24h: int
    trend_30d: list[DayRequests]
    secrets_expire_at: datetime | None = None
    """When the app's last secret stops working: rotate before then. Null when one never
    expires, or it has none."""
