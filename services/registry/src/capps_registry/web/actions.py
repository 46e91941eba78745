"""What an admin changes on the application page; every form is CSRF-checked.

Each action calls the registry's own service layer in-process, exactly as the admin API does,
so the same validation, outbox record (and so gateway enforcement) and audit follow.
"""

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from capps_registry.apps import service
from capps_registry.apps.schemas import AppUpdate
from capps_registry.web import detail
from capps_registry.web.forms import FormError, app_update
from capps_registry.web.guard import AdminSession, CheckedForm, RegistryDep
from capps_registry.web.rendering import PAGE_HEADERS, PageError, PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _back(app_id: str, done: str) -> Response:
    # Post/redirect/get: a reload never repeats the change.
    return RedirectResponse(f"/apps/{app_id}?done={done}", status_code=303, headers=PAGE_HEADERS)


def _one(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name) or [""]
    return values[0]


@router.post("/apps/{app_id}")
async def edit(
    request: Request,
    app_id: str,
    session: AdminSession,
    state: RegistryDep,
    fields: CheckedForm,
) -> Response:
    """Save name, description, permissions and rate limits; the form again with the problem."""
    try:
        body = app_update(fields)
    except FormError as exc:
        app = await service.get_app(state, session.tenant_id, app_id)
        view = await detail.build(state, session.tenant_id, app, datetime.now(UTC))
        return render(
            request,
            "app.html",
            {
                "session": session,
                "app": app,
                "view": view,
                "catalog": list(state.catalog.permissions.values()),
                "now": datetime.now(UTC),
                "edit_error": str(exc),
                "notice": None,
            },
            status=400,
        )
    await service.update_app(state, session.tenant_id, app_id, body)
    return _back(app_id, "saved")


@router.post("/apps/{app_id}/status")
async def set_status(
    app_id: str, session: AdminSession, state: RegistryDep, fields: CheckedForm
) -> Response:
    """Enable or disable the app."""
    wanted = _one(fields, "enabled")
    if wanted not in ("true", "false"):
        raise PageError(400, "Bad request", "enabled must be true or false")
    enabled = wanted == "true"
    await service.update_app(state, session.tenant_id, app_id, AppUpdate(enabled=enabled))
    return _back(app_id, "enabled" if enabled else "disabled")


@router.post("/apps/{app_id}/permissions/remove")
async def remove_permission(
    app_id: str, session: AdminSession, state: RegistryDep, fields: CheckedForm
) -> Response:
    """Take one permission away with one click (offered for permissions left unused)."""
    permission = _one(fields, "permission")
    app = await service.get_app(state, session.tenant_id, app_id)
    if permission not in app.permissions:
        raise PageError(409, "Conflict", f"{app.name} does not hold {permission[:200]!r}")
    remaining = [name for name in app.permissions if name != permission]
    await service.update_app(state, session.tenant_id, app_id, AppUpdate(permissions=remaining))
    return _back(app_id, "permission_removed")


@router.post("/apps/{app_id}/delete")
async def delete(
    app_id: str, session: AdminSession, state: RegistryDep, fields: CheckedForm
) -> Response:
    """Delete the app once the admin typed its name to confirm."""
    app = await service.get_app(state, session.tenant_id, app_id)
    if _one(fields, "confirm_name").strip() != app.name:
        raise PageError(
            400,
            "Not deleted",
            f"To delete it, type the application's name, {app.name}, exactly. Nothing changed.",
        )
    await service.delete_app(state, session.tenant_id, app_id)
    return RedirectResponse("/?done=deleted", status_code=303, headers=PAGE_HEADERS)
