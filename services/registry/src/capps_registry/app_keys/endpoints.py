"""HTTP routes of an app's public key set, for private_key_jwt client authentication."""

from fastapi import APIRouter, Response

from capps_registry.app_keys import service
from capps_registry.app_keys.schemas import JwksIn, JwksOut
from capps_registry.apps.endpoints import ADMIN
from capps_registry.auth import TenantAdmin
from capps_registry.errors import error_responses
from capps_registry.state import StateDep

router = APIRouter(prefix="/v1", tags=["keys"], responses=error_responses(*ADMIN, 404))


@router.get("/apps/{app_id}/jwks")
async def get_app_keys(app_id: str, admin: TenantAdmin, state: StateDep) -> JwksOut:
    """The public keys the app signs its client assertions with (none: secrets only)."""
    return await service.get_app_keys(state, admin, app_id)


@router.put("/apps/{app_id}/jwks", responses=error_responses(409))
async def replace_app_keys(
    app_id: str, body: JwksIn, admin: TenantAdmin, state: StateDep
) -> JwksOut:
    """Register (or replace) the app's public keys: 1 to 5 RSA, EC P-256 or Ed25519 keys.

    Private key material is refused. The app then authenticates at the token endpoint with
    `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    """
    return await service.replace_app_keys(state, admin, app_id, body)


@router.delete("/apps/{app_id}/jwks", status_code=204, responses=error_responses(409))
async def delete_app_keys(app_id: str, admin: TenantAdmin, state: StateDep) -> Response:
    """Remove the app's public keys; its assertions stop working at once."""
    await service.delete_app_keys(state, admin, app_id)
    return Response(status_code=204)
