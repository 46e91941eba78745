"""HTTP routes of the apps API and the permission catalog, for a tenant's admin."""

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Query, Response

from capps_registry.apps import external, service
from capps_registry.apps.preconditions import etag, parse_if_match
from capps_registry.apps.schemas import (
    DEFAULT_PAGE,
    MAX_PAGE,
    AppCreate,
    AppCreated,
    AppDetail,
    AppList,
    AppSort,
    AppUpdate,
    PermissionList,
    PermissionOut,
    RouteOut,
)
from capps_registry.auth import TenantAdmin, require_tenant_admin
from capps_registry.errors import error_responses
from capps_registry.state import StateDep

# Every admin call can be refused for its token, its size or its rate, or fail on a store.
ADMIN = (401, 403, 413, 422, 503)
router = APIRouter(prefix="/v1", tags=["apps"], responses=error_responses(*ADMIN))
# The ETag an app was read at; a change then applies only while the app is still there.
IfMatchHeader = Annotated[
    str | None,
    Header(
        max_length=2000,
        description='The app\'s ETag as last read (`"7"`), or `*`: 412 if it changed since.',
    ),
]


@router.get("/permissions", dependencies=[Depends(require_tenant_admin)])
async def list_permissions(state: StateDep) -> PermissionList:
    """The API permission catalog."""
    return PermissionList(
        permissions=[
            PermissionOut(
                name=permission.name,
                description=permission.description,
                routes=[RouteOut(method=r.method, template=r.template) for r in permission.routes],
            )
            for permission in state.catalog.permissions.values()
        ]
    )


@router.post("/apps", status_code=201, responses=error_responses(400))
async def create_app(
    body: AppCreate, admin: TenantAdmin, state: StateDep, response: Response
) -> AppCreated:
    """Register an app; the answer carries its client secret, shown only this once.

    With `external: {issuer, client_id}` the app is that identity provider's client: its id is
    the client id, it gets no secret, and its tokens come from its provider.
    """
    if body.external is not None:
        created = await external.create_external_app(state, admin, body)
    else:
        created = await service.create_app(state, admin, body)
    response.headers["Location"] = f"/v1/apps/{created.id}"
    response.headers["Cache-Control"] = "no-store"
    response.headers["ETag"] = etag(created.version)
    return created


@router.get("/apps", response_model=AppList, responses=error_responses(400))
async def list_apps(
    admin: TenantAdmin,
    state: StateDep,
    sort: AppSort = "name",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Response:
    """A page of the tenant's apps with stats, by name, last seen or requests (most first).

    By requests, the order follows the tenant's counts of the last few seconds (each app
    shows its current count).
    """
    page = await service.list_apps(state, admin, sort=sort, cursor=cursor, limit=limit)
    # Rendered here from plain data (see service.app_row), not through a model per row.
    return Response(orjson.dumps(page, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.get("/apps/{app_id}", responses=error_responses(404))
async def get_app(
    app_id: str, admin: TenantAdmin, state: StateDep, response: Response
) -> AppDetail:
    """One app with its stats and secrets' metadata; its ETag names its configuration version."""
    app = await service.get_app(state, admin, app_id)
    response.headers["ETag"] = etag(app.version)
    return app


@router.patch("/apps/{app_id}", responses=error_responses(400, 404, 412))
async def update_app(
    *,
    app_id: str,
    body: AppUpdate,
    admin: TenantAdmin,
    state: StateDep,
    response: Response,
    if_match: IfMatchHeader = None,
) -> AppDetail:
    """Reconfigure an app: name, description, enabled, permissions, rate limit (either part).

    With If-Match, only while the app is at that ETag: a change made by someone else since
    the caller read it answers 412 and changes nothing.
    """
    condition = parse_if_match(if_match)
    app = await service.update_app(state, admin, app_id, body, condition)
    response.headers["ETag"] = etag(app.version)
    return app


@router.delete("/apps/{app_id}", status_code=204, responses=error_responses(400, 404, 412))
async def delete_app(
    app_id: str, admin: TenantAdmin, state: StateDep, if_match: IfMatchHeader = None
) -> Response:
    """Delete an app; its credentials stop working at once. With If-Match, as for PATCH."""
    await service.delete_app(state, admin, app_id, parse_if_match(if_match))
    return Response(status_code=204)
