"""The pages an admin reads: the Connected applications list, registering an app, one app."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from capps_registry.apps import repository as apps_repository
from capps_registry.apps import service
from capps_registry.db import tenant_transaction
from capps_registry.models import Principal
from capps_registry.state import RegistryState
from capps_registry.usage.service import stats_of
from capps_registry.usage.sort_snapshot import sorted_requests_24h
from capps_registry.web import detail
from capps_registry.web.charts import sparkline
from capps_registry.web.forms import SECRET_LIFETIMES_DAYS, FormError, app_create
from capps_registry.web.guard import Admin, AdminSession, CheckedForm, RegistryDep
from capps_registry.web.listing import (
    PAGE_SIZES,
    SORT_KEYS,
    USAGE_SORTS,
    ListEntry,
    ListPage,
    ListQuery,
    ListQueryError,
    filter_entries,
    page_of,
)
from capps_registry.web.listing import parse_list_query as parse_query
from capps_registry.web.rendering import PageError, PageRoute, render
from capps_usage.stats import AppStats

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# A bound on what one list reads; far above any tenant we know of.
MAX_LISTED = 20_000

NOTICES = {
    "deleted": "The application was deleted. Its credentials and tokens no longer work.",
}
COLUMNS = {
    "name": "Application name",
    "id": "Application (client) ID",
    "status": "Status",
    "last_seen": "Last seen",
    "requests": "Requests (24 h)",
    "trend": "Trend (30 days)",
}


async def list_page(state: RegistryState, actor: Principal, query: ListQuery) -> ListPage:
    """The page of the list the query asks for.

    One query reads every app of the tenant (name, id, status); usage is read for the
    matching apps only when the list is sorted by it (requests from the tenant's sort
    snapshot, the 30-day trends only when sorted by them), and otherwise for the page's rows
    alone (see shown_rows).
    """
    clients = await apps_repository.apps_by_name(state.pool, actor.tenant_id, None, MAX_LISTED)
    entries = [ListEntry(c.id, c.name, c.enabled, None, 0) for c in clients]
    matching = filter_entries(entries, query)
    if query.sort == "requests" and matching:
        # The same counts the admin API sorts by (the tenant's sort snapshot).
        counts = await sorted_requests_24h(
            state,
            actor.tenant_id,
            [entry.id for entry in matching],
            every_app=len(matching) == len(entries),
        )
        matching = [replace(e, requests_24h=counts.get(e.id, 0)) for e in matching]
    elif query.sort in USAGE_SORTS and matching:
        stats = await stats_of(
            state, [entry.id for entry in matching], with_trend=query.sort == "trend"
        )
        matching = [with_usage(entry, stats.get(entry.id)) for entry in matching]
    return page_of(matching, query, len(entries))


def with_usage(entry: ListEntry, stats: AppStats | None) -> ListEntry:
    """The entry with the usage its sort needs."""
    if stats is None:
        return entry
    return replace(
        entry,
        last_seen=stats.last_seen,
        requests_24h=stats.requests_24h,
        trend_total=sum(day.requests for day in stats.trend_30d),
    )


@dataclass(frozen=True, slots=True)
class ListRow:
    """One row of the list: the app and its stats as the admin API reports them."""

    id: str
    name: str
    enabled: bool
    last_seen: datetime | None
    requests_24h: int
    trend: list[int]
    secrets_expire_at: datetime | None


async def shown_rows(state: RegistryState, actor: Principal, ids: list[str]) -> list[ListRow]:
    """The page's rows with their full stats (30-day trend included), in the given order."""
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        clients = await apps_repository.apps_by_id(conn, actor.tenant_id, ids)
        ends = await apps_repository.secrets_ends(conn, actor.tenant_id, ids)
    stats = await stats_of(state, ids)
    rows = []
    for app_id in ids:
        client, found = clients.get(app_id), stats.get(app_id)
        if client is not None:
            rows.append(
                ListRow(
                    client.id,
                    client.name,
                    client.enabled,
                    found.last_seen if found else None,
                    found.requests_24h if found else 0,
                    [day.requests for day in found.trend_30d] if found else [],
                    ends.get(app_id),
                )
            )
    return rows


@router.get("/")
async def app_list(
    request: Request, session: AdminSession, actor: Admin, state: RegistryDep
) -> Response:
    """Every app of the tenant: filter, sort and page through them with their usage."""
    try:
        query = parse_query(request.query_params)
    except ListQueryError as exc:
        raise PageError(400, "Bad request", str(exc)) from None
    page = await list_page(state, actor, query)
    rows = await shown_rows(state, actor, [entry.id for entry in page.rows])
    trends = {
        app.id: sparkline(app.trend, f"{sum(app.trend):,} requests in 30 days") for app in rows
    }
    return render(
        request,
        "list.html",
        {
            "session": session,
            "query": query,
            "page": page,
            "rows": rows,
            "trends": trends,
            "columns": [(key, COLUMNS[key]) for key in SORT_KEYS],
            "page_sizes": PAGE_SIZES,
            "now": datetime.now(UTC),
            "notice": NOTICES.get(request.query_params.get("done", "")),
        },
    )


def _register_form(
    request: Request,
    session: AdminSession,
    state: RegistryDep,
    *,
    values: dict[str, object],
    error: str | None,
    status: int,
) -> Response:
    return render(
        request,
        "register.html",
        {
            "session": session,
            "catalog": list(state.catalog.permissions.values()),
            "values": values,
            "error": error,
        },
        status=status,
    )


@router.get("/apps/new")
async def register_page(request: Request, session: AdminSession, state: RegistryDep) -> Response:
    """The form that registers an application."""
    values: dict[str, object] = {"per_minute": 100, "per_hour": 1500, "permissions": []}
    return _register_form(request, session, state, values=values, error=None, status=200)


@router.post("/apps")
async def register(
    request: Request, session: AdminSession, actor: Admin, state: RegistryDep, fields: CheckedForm
) -> Response:
    """Register the app and show its secret this once (never stored, never in a URL)."""
    try:
        body = app_create(fields)
    except FormError as exc:
        values: dict[str, object] = {name: (v[0] if v else "") for name, v in fields.items()}
        values["permissions"] = fields.get("permissions", [])
        return _register_form(request, session, state, values=values, error=str(exc), status=400)
    created = await service.create_app(state, actor, body)
    return render(
        request,
        "secret.html",
        {
            "session": session,
            "app": created,
            "secret": created.client_secret,
            "heading": f"{created.name} is registered",
        },
        status=201,
    )


@router.get("/apps/{app_id}")
async def app_page(
    request: Request, app_id: str, session: AdminSession, actor: Admin, state: RegistryDep
) -> Response:
    """One app: details, usage charts, permissions, secrets, settings and its audit trail."""
    notice = detail.NOTICES.get(request.query_params.get("done", ""))
    return await render_app_page(request, session, actor, state, app_id, notice=notice)


async def render_app_page(
    request: Request,
    session: AdminSession,
    actor: Principal,
    state: RegistryState,
    app_id: str,
    *,
    notice: str | None = None,
    edit_error: str | None = None,
    secret_error: str | None = None,
    status: int | None = None,
) -> Response:
    """The application page, with a notice or a form's problem when there is one."""
    app = await service.get_app(state, actor, app_id)
    now = datetime.now(UTC)
    view = await detail.build(state, actor, app, now)
    return render(
        request,
        "app.html",
        {
            "session": session,
            "app": app,
            "view": view,
            "catalog": list(state.catalog.permissions.values()),
            "now": now,
            "notice": notice,
            "edit_error": edit_error,
            "secret_error": secret_error,
            "secret_lifetimes": SECRET_LIFETIMES_DAYS,
        },
        status=status or (400 if edit_error or secret_error else 200),
    )
