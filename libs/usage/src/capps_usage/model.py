"""What the read model answers: an app's stats as an admin sees them."""

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class DayCount:
    """Requests on one UTC day."""

    date: date
    requests: int


@dataclass(frozen=True, slots=True)
class AppStats:
    """Last seen, requests in the trailing 24 h and (when asked) the 30-day trend."""

    last_seen: datetime | None
    requests_24h: int
    trend_30d: list[DayCount]
