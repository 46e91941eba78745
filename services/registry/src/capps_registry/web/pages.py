"""The pages an admin reads: the Connected applications list, registering an app, one app."""

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from capps_registry.apps import service
from capps_registry.apps.schemas import MAX_PAGE, AppOut
from capps_registry.models import Principal
from capps_registry.state import RegistryState
from capps_registry.web import detail
from capps_registry.web.charts import sparkline
from capps_registry.web.forms import FormError, app_create
from capps_registry.web.guard import Admin, AdminSession, CheckedForm, RegistryDep
from capps_registry.web.listing import PAGE_SIZES, SORT_KEYS, ListQueryError, apply_query
from capps_registry.web.listing import parse_list_query as parse_query
from capps_registry.web.rendering import PageError, PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

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


async def all_apps(state: RegistryState, actor: Principal) -> list[AppOut]:
    """Every app of the tenant with its stats, read through the service's pages.

    The page filters by name and status and sorts by any column, so it needs them all; the
    service reads stats in one script call per chunk of apps, not commands per app.
    """
    found: list[AppOut] = []
    cursor: str | None = None
    while True:
        page = await service.list_apps(state, actor, cursor=cursor, limit=MAX_PAGE)
        found.extend(page.apps)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


@router.get("/")
async def app_list(
    request: Request, session: AdminSession, actor: Admin, state: RegistryDep
) -> Response:
    """Every app of the tenant: filter, sort and page through them with their usage."""
    try:
        query = parse_query(request.query_params)
    except ListQueryError as exc:
        raise PageError(400, "Bad request", str(exc)) from None
    apps = await all_apps(state, actor)
    page = apply_query(apps, query)
    trends = {
        app.id: sparkline(
            [day.requests for day in app.trend_30d],
            f"{sum(day.requests for day in app.trend_30d):,} requests in 30 days",
        )
        for app in page.rows
    }
    return render(
        request,
        "list.html",
        {
            "session": session,
            "query": query,
            "page": page,
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
        },
        status=400 if edit_error or secret_error else 200,
    )
