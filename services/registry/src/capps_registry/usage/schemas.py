"""Response bodies of the usage API."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from capps_usage.series import Granularity


class UsagePointOut(BaseModel):
    """One UTC bucket: requests by status class, denied, throttled, latency and bytes."""

    start: datetime
    requests: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    denied: int
    throttled: int
    bytes_in: int
    bytes_out: int
    latency_ms_avg: float | None
    latency_ms_max: float | None
    latency_ms_p95: float | None


class UsageSeries(BaseModel):
    """An app's usage in [from, to), one point per bucket, zero-filled."""

    model_config = ConfigDict(populate_by_name=True)

    app_id: str
    granularity: Granularity
    from_: datetime = Field(alias="from")
    to: datetime
    points: list[UsagePointOut]


class RouteUsageOut(BaseModel):
    """Calls of one route template over the range."""

    method: str
    route: str
    permission: str | None
    requests: int
    errors: int


class UsageRoutes(BaseModel):
    """Requests and errors by route over the last `days` UTC days, and permissions not used."""

    app_id: str
    days: int
    routes: list[RouteUsageOut]
    unused_permissions: list[str]
    """Granted permissions none of whose routes was called in the range."""
