"""What the application page shows beyond the app itself: its charts and breakdowns."""

from dataclasses import dataclass
from datetime import datetime

from capps_registry.apps.schemas import AppDetail
from capps_registry.state import RegistryState
from capps_registry.web.charts import Bar, bar_chart

NOTICES = {
    "saved": "Changes saved. Gateways enforce them within about a second.",
    "enabled": "The application is enabled. It must get new tokens to call again.",
    "disabled": "The application is disabled. Its tokens are refused from now on.",
    "permission_removed": "Permission removed. Gateways refuse its routes within about a second.",
    "secret_deleted": "The secret was deleted. It no longer gets tokens.",
}


@dataclass(frozen=True, slots=True)
class AppView:
    """The charts and breakdowns of one app's page."""

    trend_chart: str
    trend_total: int


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


async def build(state: RegistryState, tenant_id: str, app: AppDetail, now: datetime) -> AppView:
    """Read what the page needs of the app's usage and draw it."""
    del state, tenant_id, now  # the usage series and audit reads join here as they land
    bars = trend_bars(app)
    total = sum(bar.value for bar in bars)
    return AppView(
        trend_chart=bar_chart(bars, f"Requests per day over 30 days: {total:,} in all"),
        trend_total=total,
    )
