"""Requests and errors of one app by route over its last days, from usage_route_day."""

from dataclasses import dataclass
from datetime import date

import asyncpg

MAX_ROUTE_DAYS = 400


@dataclass(frozen=True, slots=True)
class RouteUsage:
    """Calls of one route template (and method) over a range of days."""

    method: str
    route: str
    requests: int
    errors: int


async def read_route_usage(
    pool: asyncpg.Pool, app_id: str, first_day: date, last_day: date
) -> list[RouteUsage]:
    """Per route, the app's requests and errors (status >= 400) in [first_day, last_day]."""
    rows = await pool.fetch(
        "SELECT method, route, sum(requests) AS requests, sum(errors) AS errors "
        "FROM usage_route_day WHERE app_id = $1 AND day >= $2 AND day <= $3 "
        "GROUP BY method, route ORDER BY sum(requests) DESC, method, route",
        app_id,
        first_day,
        last_day,
    )
    return [
        RouteUsage(row["method"], row["route"], int(row["requests"]), int(row["errors"]))
        for row in rows
    ]
