"""HTTP routes of the apps API and the permission catalog, for a tenant's admin."""

from fastapi import APIRouter, Depends, Response

from capps_registry.apps import external, service
from capps_registry.apps.schemas import (
    AppCreate,
    AppCreated,
    AppDetail,
    AppList,
    AppUpdate,
    PermissionList,
    PermissionOut,
    RouteOut,
)
from capps_registry.auth import TenantAdmin, require_tenant_admin
from capps_registry.state import AppState

router = APIRouter(prefix="/v1", tags=["apps"])


@router.get("/permissions", dependencies=[Depends(require_tenant_admin)])
async def list_permissions(state: AppState) -> PermissionList:
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


@router.post("/apps", status_code=201)
async def create_app(
    body: AppCreate, admin: TenantAdmin, state: AppState, response: Response
) -> AppCreated:
    """Register an app; the answer carries its client secret, shown only this once.

    With `external: {issuer, client_id}` the app is that identity provider's client: its id is
    the client id, it gets no secret, and its tokens come from its provider.
    """
    if body.external is not None:
        created = await external.create_external_app(state, admin.tenant_id, body)
    else:
        created = await service.create_app(state, admin.tenant_id, body)
    response.headers["Location"] = f"/v1/apps/{created.id}"
    response.headers["Cache-Control"] = "no-store"
    return created


@router.get("/apps")
async def list_apps(admin: TenantAdmin, state: AppState) -> AppList:
    """Every app of the caller's tenant with its stats."""
    return AppList(apps=await service.list_apps(state, admin.tenant_id))


@router.get("/apps/{app_id}")
async def get_app(app_id: str, admin: TenantAdmin, state: AppState) -> AppDetail:
    """One app with its stats and secrets' metadata."""
    return await service.get_app(state, admin.tenant_id, app_id)


@router.patch("/apps/{app_id}")
async def update_app(
    app_id: str, body: AppUpdate, admin: TenantAdmin, state: AppState
) -> AppDetail:
    """Reconfigure an app: name, description, enabled, permissions, rate limit."""
    return await service.update_app(state, admin.tenant_id, app_id, body)


@router.delete("/apps/{app_id}", status_code=204)
async def delete_app(app_id: str, admin: TenantAdmin, state: AppState) -> Response:
    """Delete an app; its credentials stop working at once."""
    await service.delete_app(state, admin.tenant_id, app_id)
    return Response(status_code=204)
