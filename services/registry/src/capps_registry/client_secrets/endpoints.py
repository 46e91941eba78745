"""HTTP routes that rotate secrets: an app's, and the tenant admin client's own."""

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from capps_registry.apps.endpoints import ADMIN
from capps_registry.auth import TenantAdmin
from capps_registry.client_secrets import service
from capps_registry.client_secrets.schemas import AdminClientOut, SecretCreate, SecretCreated
from capps_registry.errors import error_responses
from capps_registry.state import StateDep

router = APIRouter(prefix="/v1", tags=["secrets"], responses=error_responses(*ADMIN, 404))

RevokeTokens = Annotated[
    bool, Query(description="also refuse every token the client holds now (a leaked secret)")
]
NO_STORE = "no-store"
# The body is optional: `{}` or none at all makes a secret that does not expire.
NewSecretBody = Annotated[SecretCreate | None, Body()]


@router.post("/apps/{app_id}/secrets", status_code=201, responses=error_responses(409))
async def add_app_secret(
    app_id: str, admin: TenantAdmin, state: StateDep, response: Response, body: NewSecretBody = None
) -> SecretCreated:
    """Add a secret (shown this once); 409 when the app already has two active."""
    response.headers["Cache-Control"] = NO_STORE
    return await service.add_app_secret(state, admin, app_id, body or SecretCreate())


@router.delete("/apps/{app_id}/secrets/{secret_id}", status_code=204)
async def delete_app_secret(
    app_id: str,
    secret_id: str,
    admin: TenantAdmin,
    state: StateDep,
    *,
    revoke_tokens: RevokeTokens = False,
) -> Response:
    """Delete a secret of an app; it stops working at once."""
    await service.delete_app_secret(state, admin, app_id, secret_id, revoke_tokens=revoke_tokens)
    return Response(status_code=204)


@router.get("/admin-client")
async def get_admin_client(admin: TenantAdmin, state: StateDep) -> AdminClientOut:
    """The tenant's admin client and its secrets' metadata."""
    return await service.get_admin_client(state, admin)


@router.post("/admin-client/secrets", status_code=201, responses=error_responses(409))
async def add_admin_secret(
    admin: TenantAdmin, state: StateDep, response: Response, body: NewSecretBody = None
) -> SecretCreated:
    """Add a secret to the admin client (shown this once); 409 when two are active."""
    response.headers["Cache-Control"] = NO_STORE
    return await service.add_admin_secret(state, admin, body or SecretCreate())


@router.delete("/admin-client/secrets/{secret_id}", status_code=204)
async def delete_admin_secret(
    secret_id: str, admin: TenantAdmin, state: StateDep, *, revoke_tokens: RevokeTokens = False
) -> Response:
    """Delete a secret of the admin client; with revoke_tokens, every admin token dies too."""
    await service.delete_admin_secret(state, admin, secret_id, revoke_tokens=revoke_tokens)
    return Response(status_code=204)
