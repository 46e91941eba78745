"""OAuth endpoints: token (RFC 6749 §4.4), introspection (RFC 7662), JWKS and metadata."""

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from capps_catalog import Catalog
from capps_registry.errors import REQUEST_ID_HEADER, ErrorBody, request_id_of
from capps_registry.metrics import TOKENS_ISSUED, TOKENS_REFUSED
from capps_registry.models import Client
from capps_registry.oauth import service, throttle
from capps_registry.oauth.claims import TENANT_ADMIN_ROLE
from capps_registry.oauth.client_auth import ClientAssertion, authenticate_request
from capps_registry.oauth.client_keys import SIGNING_ALGORITHMS
from capps_registry.oauth.errors import NO_STORE, OAuthError, OAuthErrorBody
from capps_registry.oauth.service import ClientRefusedError
from capps_registry.settings import RegistrySettings
from capps_registry.state import RegistryState, StateDep

router = APIRouter(tags=["oauth"])

FORM_TYPE = "application/x-www-form-urlencoded"
GRANT_TYPE = "client_credentials"
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
# grant_type, scope, client_id, client_secret, token, token_type_hint, assertion...: 16 is ample.
MAX_FORM_FIELDS = 16


async def read_form(request: Request) -> dict[str, str]:
    """The form parameters, each at most once (RFC 6749 §3.2), or invalid_request.

    The body is already bounded (BodyLimitMiddleware); the field count is bounded here.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise OAuthError("invalid_request", f"the request body must be {FORM_TYPE}")
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the form must be UTF-8") from None
    except ValueError:
        raise OAuthError(
            "invalid_request", f"the form has more than {MAX_FORM_FIELDS} fields"
        ) from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise OAuthError("invalid_request", f"parameter {name} is repeated")
        params[name] = value
    return params


async def authenticate(request: Request, state: RegistryState, params: dict[str, str]) -> Client:
    """The client that sent the request, with failed attempts limited per id and address."""
    address = request.client.host if request.client else "unknown"
    try:
        credentials = authenticate_request(request.headers.get("authorization"), params)
    except OAuthError as exc:
        if exc.error == "invalid_client":
            await throttle.record_failure(state.redis, None, address)
        raise
    limits = state.settings.auth_failure_limits
    wait = await throttle.over_limit(state.redis, limits, credentials.client_id, address)
    if wait is not None:
        raise ClientRefusedError(
            "throttled",
            "too many failed authentications; retry later",
            status=429,
            headers={"Retry-After": str(wait)},
        )
    try:
        if isinstance(credentials, ClientAssertion):
            return await service.authenticate_by_assertion(state.pool, state.settings, credentials)
        return await service.authenticate_client(state.pool, state.settings.pepper, credentials)
    except OAuthError as exc:
        if exc.error == "invalid_client":
            await throttle.record_failure(state.redis, credentials.client_id, address)
        raise


async def authenticated_caller(
    request: Request, state: RegistryState
) -> tuple[Client, dict[str, str]]:
    """Read the form and authenticate the client that sent it."""
    params = await read_form(request)
    return await authenticate(request, state, params), params


async def _grant(request: Request, state: RegistryState) -> tuple[Client, service.IssuedToken]:
    params = await read_form(request)
    grant_type = params.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    # Authenticate before judging the grant, so strangers learn nothing about the server.
    client = await authenticate(request, state, params)
    if grant_type != GRANT_TYPE:
        raise OAuthError(
            "unsupported_grant_type", f"only {GRANT_TYPE} is supported, not {grant_type!r}"
        )
    return client, service.issue_token(state.settings, state.keys, client, params.get("scope"))


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 access token response."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2: `active` only for an inactive token, every claim for an active one."""

    active: bool
    scope: str | None = None
    client_id: str | None = None
    token_type: str | None = None
    exp: int | None = None
    iat: float | None = None
    sub: str | None = None
    aud: str | None = None
    iss: str | None = None
    jti: str | None = None
    tid: str | None = None
    roles: list[str] | None = None


def _form(*fields: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAPI of a form body the handler reads itself (bounded, fields counted)."""
    schema = {
        "type": "object",
        "properties": {name: {"type": "string"} for name in fields},
        "required": list(required),
    }
    return {"requestBody": {"required": True, "content": {FORM_TYPE: {"schema": schema}}}}


def _oauth_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "invalid_request, unsupported_grant_type, invalid_scope",
        401: "invalid_client: client authentication failed",
        413: "the form is larger than the limit",
        429: "too many failed authentications for this client id or address; see Retry-After",
    }
    return {
        status: {
            "model": ErrorBody if status == 413 else OAuthErrorBody,
            "description": described[status],
        }
        for status in statuses
    }


@router.post(
    "/oauth2/token",
    response_model=TokenResponse,
    responses=_oauth_errors(400, 401, 413, 429),
    openapi_extra=_form(
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
        "client_assertion_type",
        "client_assertion",
        required=("grant_type",),
    ),
)
async def token(request: Request, state: StateDep) -> JSONResponse:
    """Client credentials grant: a JWT access token for the authenticated client."""
    try:
        client, issued = await _grant(request, state)
    except OAuthError as exc:
        TOKENS_REFUSED.labels(getattr(exc, "reason", exc.error)).inc()
        raise
    TOKENS_ISSUED.labels(client.kind).inc()
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": " ".join(issued.scope),
        },
        headers={**NO_STORE, REQUEST_ID_HEADER: request_id_of(request)},
    )


@router.post(
    "/oauth2/introspect",
    response_model=IntrospectionResponse,
    responses=_oauth_errors(400, 401, 413, 429),
    openapi_extra=_form(
        "token",
        "client_id",
        "client_secret",
        "client_assertion_type",
        "client_assertion",
        required=("token",),
    ),
)
async def introspect(request: Request, state: StateDep) -> JSONResponse:
    """RFC 7662 introspection for a tenant's admin client; anything else is inactive."""
    caller, params = await authenticated_caller(request, state)
    token_value = params.get("token")
    if not token_value:
        raise OAuthError("invalid_request", "token is required")
    body = await service.introspect(state.pool, state.settings, state.keys, caller, token_value)
    return JSONResponse(body, headers={**NO_STORE, REQUEST_ID_HEADER: request_id_of(request)})


@router.get("/.well-known/jwks.json")
async def jwks(state: StateDep) -> JSONResponse:
    """The public keys that verify access tokens."""
    # Short enough that a cache drops a retired key soon after it leaves; verifiers refetch on
    # an unknown kid anyway, which is how a rotated key reaches them at once.
    return JSONResponse(
        dict(state.keys.jwks()),
        headers={"Cache-Control": "public, max-age=60, stale-while-revalidate=30"},
    )


def server_metadata(settings: RegistrySettings, catalog: Catalog) -> dict[str, Any]:
    """RFC 8414 authorization server metadata; no authorization endpoint, so no response types."""
    issuer = settings.issuer
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth2/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "grant_types_supported": [GRANT_TYPE],
        "response_types_supported": [],
        "scopes_supported": [TENANT_ADMIN_ROLE, *sorted(catalog.permissions)],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "aud", "sub", "client_id", "tid", "roles", "iat", "exp", "jti"],
    }


@router.get("/.well-known/oauth-authorization-server")
async def oauth_metadata(state: StateDep) -> dict[str, Any]:
    """Where the token, introspection and key endpoints are."""
    return server_metadata(state.settings, state.catalog)


@router.get("/.well-known/openid-configuration")
async def openid_configuration(state: StateDep) -> dict[str, Any]:
    """The same metadata under the OpenID discovery name that many client libraries read."""
    return server_metadata(state.settings, state.catalog)
