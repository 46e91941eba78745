"""HTTP routes of an app's usage: the series with breakdowns, and requests by route."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from capps_registry.apps.endpoints import ADMIN
from capps_registry.auth import TenantAdmin
from capps_registry.errors import error_responses
from capps_registry.state import StateDep
from capps_registry.usage import service
from capps_registry.usage.schemas import UsageRoutes, UsageSeries
from capps_usage.routes import MAX_ROUTE_DAYS
from capps_usage.series import Granularity

router = APIRouter(prefix="/v1", tags=["usage"], responses=error_responses(*ADMIN, 404))


@router.get("/apps/{app_id}/usage", responses=error_responses(400))
async def usage_series(
    app_id: str,
    admin: TenantAdmin,
    state: StateDep,
    *,
    granularity: Granularity = "minute",
    from_: Annotated[
        datetime | None,
        Query(alias="from", description="start, RFC 3339 with zone (default: 1 h / 30 days ago)"),
    ] = None,
    to: Annotated[datetime | None, Query(description="end, exclusive (default: now)")] = None,
) -> UsageSeries:
    """The app's usage per UTC minute (at most 48 h) or day (at most 400 days), zero-filled."""
    return await service.usage_series(state, admin, app_id, granularity, start=from_, end=to)


@router.get("/apps/{app_id}/usage/routes")
async def route_usage(
    app_id: str,
    admin: TenantAdmin,
    state: StateDep,
    days: Annotated[int, Query(ge=1, le=MAX_ROUTE_DAYS)] = 30,
) -> UsageRoutes:
    """Requests and errors by route over the last `days` UTC days; permissions with no call."""
    return await service.route_usage(state, admin, app_id, days)
