"""What the application page works out from usage and audit records: pure, no I/O."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from capps_registry.web.charts import Marker
from capps_usage.series import UsagePoint


@dataclass(frozen=True, slots=True)
class StatusBreakdown:
    """Calls by status class over a period, with denied (401/403) and throttled (429) apart."""

    requests: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    denied: int
    throttled: int

    def rows(self) -> list[tuple[str, int]]:
        """(label, calls) in the order the page lists them."""
        return [
            ("2xx success", self.status_2xx),
            ("3xx redirect", self.status_3xx),
            ("4xx client error", self.status_4xx),
            ("of which denied (401/403)", self.denied),
            ("of which throttled (429)", self.throttled),
            ("5xx server error", self.status_5xx),
        ]


def status_breakdown(points: Iterable[UsagePoint]) -> StatusBreakdown:
    """The sums of the breakdown columns over `points`."""
    totals = dict.fromkeys(
        ("requests", "status_2xx", "status_3xx", "status_4xx", "status_5xx", "denied", "throttled"),
        0,
    )
    for point in points:
        for name in totals:
            totals[name] += getattr(point, name)
    return StatusBreakdown(**totals)


@dataclass(frozen=True, slots=True)
class LimitUse:
    """How much of one limit was used: at the peak window and in the current one."""

    limit: int
    peak: int
    peak_at: datetime | None
    current: int

    @property
    def peak_share(self) -> float:
        """The peak window's calls as a share of the limit (may exceed 1 when throttled)."""
        return self.peak / self.limit if self.limit else 0.0

    @property
    def current_share(self) -> float:
        """The current window's calls as a share of the limit."""
        return self.current / self.limit if self.limit else 0.0


def peak_minute(points: Sequence[UsagePoint]) -> tuple[int, datetime | None]:
    """The busiest minute of a minute series: (calls, when); (0, None) without calls."""
    best = max(points, key=lambda point: point.requests, default=None)
    if best is None or best.requests == 0:
        return 0, None
    return best.requests, best.start


def peak_hour(points: Sequence[UsagePoint]) -> tuple[int, datetime | None]:
    """The busiest UTC clock hour (the rate limiter's window) of a minute series."""
    hours: dict[datetime, int] = {}
    for point in points:
        hour = point.start.replace(minute=0, second=0, microsecond=0)
        hours[hour] = hours.get(hour, 0) + point.requests
    if not hours or max(hours.values()) == 0:
        return 0, None
    start, calls = max(hours.items(), key=lambda item: (item[1], item[0]))
    return calls, start


PERMISSION_ACTIONS = ("app.create", "app.update")


def permission_change(event: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """(granted, removed) permissions of an audit event, or None if it changed none."""
    if event.get("action") not in PERMISSION_ACTIONS:
        return None
    before = set((event.get("before") or {}).get("permissions") or [])
    after = set((event.get("after") or {}).get("permissions") or [])
    if event.get("action") == "app.update" and before == after:
        return None
    granted, removed = sorted(after - before), sorted(before - after)
    return (granted, removed) if granted or removed else None


def describe_change(granted: Sequence[str], removed: Sequence[str]) -> str:
    """'granted A, B; removed C' in words."""
    parts = []
    if granted:
        parts.append("granted " + ", ".join(granted))
    if removed:
        parts.append("removed " + ", ".join(removed))
    return "; ".join(parts)


def permission_markers(events: Iterable[dict[str, Any]], days: Sequence[date]) -> list[Marker]:
    """One marker per trend day with permission changes, naming them all, oldest first."""
    index_of = {day: index for index, day in enumerate(days)}
    lines: dict[int, list[tuple[datetime, str]]] = {}
    for event in events:
        change = permission_change(event)
        at = event.get("at")
        if change is None or not isinstance(at, datetime):
            continue
        utc = at.astimezone(UTC)
        index = index_of.get(utc.date())
        if index is not None:
            words = f"{utc:%Y-%m-%d %H:%M} UTC: permissions {describe_change(*change)}"
            lines.setdefault(index, []).append((utc, words))
    return [
        Marker(index, "\n".join(words for _, words in sorted(found)))
        for index, found in sorted(lines.items())
    ]
