"""What the application page shows beyond the app itself: usage, headroom, routes, audit.

Every figure comes from the registry's own service layer and the shared read models of
libs/usage, called in-process: the page shows what the admin API reports.
"""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from capps_registry.apps.schemas import AppDetail
from capps_registry.audit import service as audit_service
from capps_registry.audit.schemas import AuditEventOut
from capps_registry.models import Principal
from capps_registry.state import RegistryState
from capps_registry.usage import service as usage_service
from capps_registry.usage.schemas import UsageRoutes
from capps_registry.web.charts import Bar, bar_chart, line_chart
from capps_registry.web.insights import (
    LimitUse,
    StatusBreakdown,
    describe_change,
    peak_hour,
    peak_minute,
    permission_change,
    permission_markers,
    status_breakdown,
)
from capps_usage.series import UsagePoint
from capps_usage.windows import read_current_windows

NOTICES = {
    "saved": "Changes saved. Gateways enforce them within about a second.",
    "enabled": "The application is enabled. It must get new tokens to call again.",
    "disabled": "The application is disabled. Its tokens are refused from now on.",
    "permission_removed": "Permission removed. Gateways refuse its routes within about a second.",
    "secret_deleted": "The secret was deleted. It no longer gets tokens.",
}
AUDIT_ROWS = 50


CHANNEL_WORDS = {"page": "on the page", "api": "through the API", "cli": "by the platform CLI"}


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One line of the app's audit trail."""

    at: datetime
    actor: str
    via: str
    """How, in words: 'on the page', 'through the API', 'by the platform CLI', or ''."""
    action: str
    summary: str
    permission_change: bool


@dataclass(frozen=True, slots=True)
class AppView:
    """The charts and breakdowns of one app's page."""

    trend_chart: str
    trend_total: int
    minute_chart: str
    minute_total: int
    statuses: StatusBreakdown
    routes: UsageRoutes
    per_minute: LimitUse
    per_hour: LimitUse
    audit: list[AuditRow]
    audit_more: bool


def trend_bars(app: AppDetail) -> list[Bar]:
    """One bar per UTC day of the 30-day trend, oldest first."""
    return [
        Bar(
            day.requests,
            day.date.strftime("%b %d"),
            f"{day.date.isoformat()}: {day.requests:,} requests",
        )
        for day in app.trend_30d
    ]


def audit_row(event: AuditEventOut) -> AuditRow:
    """An audit event in words, never a secret (the trail holds none)."""
    change = permission_change(event.model_dump())
    summary = _summary(event) if change is None else "permissions " + describe_change(*change)
    via = CHANNEL_WORDS.get(event.via or "", "")
    return AuditRow(event.at, event.actor, via, event.action, summary, change is not None)


def _summary(event: AuditEventOut) -> str:
    before, after = event.before or {}, event.after or {}
    if event.action.endswith("secret.create"):
        return f"secret …{(after.get('secret') or {}).get('hint', '')} added"
    if event.action.endswith("secret.delete"):
        return f"secret …{(before.get('secret') or {}).get('hint', '')} deleted"
    changed = sorted(
        name for name in set(before) | set(after) if before.get(name) != after.get(name)
    )
    if "enabled" in changed:
        return "enabled" if after.get("enabled") else "disabled"
    return ("changed " + ", ".join(changed)) if changed else event.action


async def build(state: RegistryState, actor: Principal, app: AppDetail, now: datetime) -> AppView:
    """Read what the page needs of the app's usage and trail, all at once, and draw it."""
    minute_end = now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    days, minutes, routes, windows, trail = await asyncio.gather(
        usage_service.usage_series(state, actor, app.id, "day"),
        usage_service.usage_series(
            state, actor, app.id, "minute", start=minute_end - timedelta(hours=24), end=minute_end
        ),
        usage_service.route_usage(state, actor, app.id, 30),
        read_current_windows(state.redis, state.pool, app.id, now),
        audit_service.list_events(state, actor, app_id=app.id, limit=AUDIT_ROWS),
    )
    minute_points = [UsagePoint(**point.model_dump()) for point in minutes.points]
    day_points = [UsagePoint(**point.model_dump()) for point in days.points]
    bars = trend_bars(app)
    trend_total = sum(bar.value for bar in bars)
    events = [event.model_dump() for event in trail.events]
    markers = permission_markers(events, [day.date for day in app.trend_30d])
    minute_counts = [point.requests for point in minute_points]
    peak_m, peak_m_at = peak_minute(minute_points)
    peak_h, peak_h_at = peak_hour(minute_points)
    return AppView(
        trend_chart=bar_chart(
            bars,
            f"Requests per day over 30 days: {trend_total:,} in all"
            + (f"; {len(markers)} permission changes marked" if markers else ""),
            markers=markers,
        ),
        trend_total=trend_total,
        minute_chart=line_chart(
            minute_counts,
            f"Requests per minute over the last 24 hours: {sum(minute_counts):,} in all, "
            f"at most {max(minute_counts, default=0):,} in a minute",
            first_label=f"{minute_points[0].start:%H:%M}" if minute_points else "",
            last_label=f"{minute_points[-1].start:%H:%M} UTC" if minute_points else "",
        ),
        minute_total=sum(minute_counts),
        statuses=status_breakdown(day_points),
        routes=routes,
        per_minute=LimitUse(app.rate_limit.per_minute, peak_m, peak_m_at, windows.minute_requests),
        per_hour=LimitUse(app.rate_limit.per_hour, peak_h, peak_h_at, windows.hour_requests),
        audit=[audit_row(event) for event in trail.events],
        audit_more=trail.next_cursor is not None,
    )
