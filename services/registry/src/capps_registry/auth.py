"""Who calls the admin API: a bearer token of the tenant's admin client, checked locally."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from capps_registry.errors import ApiError
from capps_registry.oauth.claims import TENANT_ADMIN_ROLE
from capps_registry.oauth.tokens import InvalidAccessTokenError, verify_token
from capps_registry.state import AppState


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a client acting in one tenant (always taken from the token's `tid`)."""

    tenant_id: str
    client_id: str
    roles: tuple[str, ...]


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


async def require_tenant_admin(request: Request, state: AppState) -> Principal:
    """A verified caller holding `Tenant.Admin`; 401 for a bad token, 403 without the role."""
    token = bearer_token(request.headers.get("authorization"))
    try:
        verified = verify_token(
            state.keys, token, state.settings.issuer, state.settings.token_audience
        )
    except InvalidAccessTokenError as exc:
        raise _unauthorized(str(exc), "invalid_token") from None
    if TENANT_ADMIN_ROLE not in verified.roles:
        raise ApiError(
            403,
            "forbidden",
            f"this call needs role {TENANT_ADMIN_ROLE}",
            {"WWW-Authenticate": 'Bearer realm="capps", error="insufficient_scope"'},
        )
    return Principal(verified.tenant_id, verified.client_id, tuple(verified.roles))


TenantAdmin = Annotated[Principal, Depends(require_tenant_admin)]
