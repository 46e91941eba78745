"""Who calls the admin API: a bearer token of the tenant's admin client, checked locally."""

from typing import Annotated

from fastapi import Depends, Request

from capps_registry.errors import ApiError, request_id_of
from capps_registry.models import Principal
from capps_registry.oauth import repository
from capps_registry.oauth.claims import TENANT_ADMIN_ROLE, issued_before
from capps_registry.oauth.tokens import InvalidAccessTokenError, VerifiedToken, verify_token
from capps_registry.state import RegistryState, StateDep

__all__ = ["AppCaller", "Principal", "TenantAdmin", "require_app", "require_tenant_admin"]


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header, or a 401 ApiError."""
    if not authorization:
        raise _unauthorized("missing bearer token", None)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'", "invalid_request")
    return token.strip()


def _unauthorized(message: str, error: str | None) -> ApiError:
    challenge = 'Bearer realm="capps"'
    if error:
        challenge += f', error="{error}"'
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": challenge})


async def verified_caller(request: Request, state: RegistryState) -> VerifiedToken:
    """The bearer token's claims if it verifies and its client may still act; else 401.

    The client's current state is checked on every call, so deleting, disabling or revoking
    the tokens of a client (the admin client too) cuts off tokens it holds at once.
    """
    token = bearer_token(request.headers.get("authorization"))
    try:
        verified = verify_token(
            state.keys, token, state.settings.issuer, state.settings.token_audience
        )
    except InvalidAccessTokenError as exc:
        raise _unauthorized(str(exc), "invalid_token") from None
    client = await repository.find_client(state.pool, verified.tenant_id, verified.client_id)
    if (
        client is None
        or client.tenant_id != verified.tenant_id
        or not client.enabled
        or issued_before(verified.claims.get("iat"), client.tokens_valid_after)
    ):
        raise _unauthorized("the token's client is deleted, disabled or revoked", "invalid_token")
    return verified


def _forbidden(message: str) -> ApiError:
    return ApiError(
        403,
        "forbidden",
        message,
        {"WWW-Authenticate": 'Bearer realm="capps", error="insufficient_scope"'},
    )


async def require_tenant_admin(request: Request, state: StateDep) -> Principal:
    """A verified caller holding `Tenant.Admin`; 401 for a bad token, 403 without the role."""
    verified = await verified_caller(request, state)
    if TENANT_ADMIN_ROLE not in verified.roles:
        raise _forbidden(f"this call needs role {TENANT_ADMIN_ROLE}")
    return Principal(
        verified.tenant_id, verified.client_id, tuple(verified.roles), request_id_of(request)
    )


async def require_app(request: Request, state: StateDep) -> Principal:
    """A verified partner app acting for itself; 403 for an admin client's token."""
    verified = await verified_caller(request, state)
    if TENANT_ADMIN_ROLE in verified.roles:
        raise _forbidden("this call takes a partner app's own token, not an admin token")
    return Principal(
        verified.tenant_id, verified.client_id, tuple(verified.roles), request_id_of(request)
    )


TenantAdmin = Annotated[Principal, Depends(require_tenant_admin)]
AppCaller = Annotated[Principal, Depends(require_app)]
