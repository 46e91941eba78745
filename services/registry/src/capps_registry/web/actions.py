"""What an admin changes on the application page; every form is CSRF-checked.

Each action calls the registry's own service layer in-process, exactly as the admin API does,
so the same validation, outbox record (and so gateway enforcement) and audit follow.
"""

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from capps_registry.apps import service
from capps_registry.apps.preconditions import at_version
from capps_registry.apps.schemas import AppUpdate
from capps_registry.client_secrets import service as secrets_service
from capps_registry.errors import ApiError
from capps_registry.web.forms import FormError, app_update, read_version, secret_create
from capps_registry.web.guard import Admin, AdminSession, CheckedForm, RegistryDep
from capps_registry.web.pages import render_app_page
from capps_registry.web.rendering import PAGE_HEADERS, PageError, PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CHANGED_MEANWHILE = (
    "Someone else changed this application while you were editing it, so nothing was saved."
    " The form now shows its current settings: make your change again."
)


def _back(app_id: str, done: str) -> Response:
    # Post/redirect/get: a reload never repeats the change.
    return RedirectResponse(f"/apps/{app_id}?done={done}", status_code=303, headers=PAGE_HEADERS)


def _one(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name) or [""]
    return values[0]


@router.post("/apps/{app_id}")
async def edit(
    *,
    request: Request,
    app_id: str,
    session: AdminSession,
    actor: Admin,
    state: RegistryDep,
    fields: CheckedForm,
) -> Response:
    """Save name, description, permissions and rate limits; the form again with the problem.

    The form carries the version it was drawn at: if someone changed the app since, nothing is
    saved and the form comes back with the current settings, rather than undoing their change.
    """
    try:
        body, condition = app_update(fields), read_version(fields)
    except FormError as exc:
        return await render_app_page(request, session, actor, state, app_id, edit_error=str(exc))
    try:
        await service.update_app(state, actor, app_id, body, condition)
    except ApiError as exc:
        if exc.status == 412:
            return await render_app_page(
                request, session, actor, state, app_id, edit_error=CHANGED_MEANWHILE, status=409
            )
        if exc.status not in (400, 422):
            raise
        return await render_app_page(request, session, actor, state, app_id, edit_error=exc.message)
    return _back(app_id, "saved")


@router.post("/apps/{app_id}/status")
async def set_status(
    app_id: str, actor: Admin, state: RegistryDep, fields: CheckedForm
) -> Response:
    """Enable or disable the app."""
    wanted = _one(fields, "enabled")
    if wanted not in ("true", "false"):
        raise PageError(400, "Bad request", "enabled must be true or false")
    enabled = wanted == "true"
    await service.update_app(state, actor, app_id, AppUpdate(enabled=enabled))
    return _back(app_id, "enabled" if enabled else "disabled")


@router.post("/apps/{app_id}/permissions/remove")
async def remove_permission(
    app_id: str, actor: Admin, state: RegistryDep, fields: CheckedForm
) -> Response:
    """Take one permission away with one click (offered for permissions left unused)."""
    permission = _one(fields, "permission")
    app = await service.get_app(state, actor, app_id)
    if permission not in app.permissions:
        raise PageError(409, "Conflict", f"{app.name} does not hold {permission[:200]!r}")
    remaining = [name for name in app.permissions if name != permission]
    # Conditional on the version just read, so a grant made meanwhile is not taken back.
    try:
        await service.update_app(
            state, actor, app_id, AppUpdate(permissions=remaining), at_version(app.version)
        )
    except ApiError as exc:
        if exc.status != 412:
            raise
        raise PageError(
            409,
            "Conflict",
            f"{app.name} changed at the same moment, so {permission[:200]!r} was not removed:"
            " open the application again and retry",
        ) from None
    return _back(app_id, "permission_removed")


@router.post("/apps/{app_id}/secrets")
async def add_secret(
    *,
    request: Request,
    app_id: str,
    session: AdminSession,
    actor: Admin,
    state: RegistryDep,
    fields: CheckedForm,
) -> Response:
    """A second secret for rotation, shown this once; refused clearly when two are active."""
    try:
        body = secret_create(fields, datetime.now(UTC))
    except FormError as exc:
        return await render_app_page(request, session, actor, state, app_id, secret_error=str(exc))
    app = await service.get_app(state, actor, app_id)
    try:
        created = await secrets_service.add_app_secret(state, actor, app_id, body)
    except ApiError as exc:
        if exc.status != 409:
            raise
        return await render_app_page(
            request, session, actor, state, app_id, secret_error=exc.message
        )
    return render(
        request,
        "secret.html",
        {
            "session": session,
            "app": app,
            "secret": created.client_secret,
            "heading": f"New secret for {app.name}",
        },
        status=201,
    )


@router.post("/apps/{app_id}/secrets/{secret_id}/delete")
async def delete_secret(
    app_id: str, secret_id: str, actor: Admin, state: RegistryDep, fields: CheckedForm
) -> Response:
    """Delete one secret; it stops getting tokens at once."""
    revoke = _one(fields, "revoke_tokens") == "true"
    await secrets_service.delete_app_secret(state, actor, app_id, secret_id, revoke_tokens=revoke)
    return _back(app_id, "secret_deleted")


@router.post("/apps/{app_id}/delete")
async def delete(app_id: str, actor: Admin, state: RegistryDep, fields: CheckedForm) -> Response:
    """Delete the app once the admin typed its name to confirm."""
    app = await service.get_app(state, actor, app_id)
    if _one(fields, "confirm_name").strip() != app.name:
        raise PageError(
            400,
            "Not deleted",
            f"To delete it, type the application's name, {app.name}, exactly. Nothing changed.",
        )
    await service.delete_app(state, actor, app_id)
    return RedirectResponse("/?done=deleted", status_code=303, headers=PAGE_HEADERS)
