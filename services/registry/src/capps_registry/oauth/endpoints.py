"""OAuth endpoints: token (RFC 6749 §4.4), introspection (RFC 7662), JWKS and metadata."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from capps_catalog import Catalog
from capps_registry.errors import REQUEST_ID_HEADER, request_id_of
from capps_registry.metrics import TOKENS_ISSUED, TOKENS_REFUSED
from capps_registry.models import Client
from capps_registry.oauth import service
from capps_registry.oauth.claims import TENANT_ADMIN_ROLE
from capps_registry.oauth.client_auth import authenticate_request
from capps_registry.oauth.errors import NO_STORE, OAuthError
from capps_registry.settings import RegistrySettings
from capps_registry.state import RegistryState, StateDep

router = APIRouter(tags=["oauth"])

FORM_TYPE = "application/x-www-form-urlencoded"
GRANT_TYPE = "client_credentials"
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


async def read_form(request: Request) -> dict[str, str]:
    """The form parameters, each at most once (RFC 6749 §3.2), or invalid_request."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise OAuthError("invalid_request", f"the request body must be {FORM_TYPE}")
    form = await request.form()
    params: dict[str, str] = {}
    for name in form:
        values = form.getlist(name)
        if len(values) > 1:
            raise OAuthError("invalid_request", f"parameter {name} is repeated")
        value = values[0]
        if isinstance(value, UploadFile):
            raise OAuthError("invalid_request", f"parameter {name} must be text")
        params[name] = value
    return params


async def authenticated_caller(
    request: Request, state: RegistryState
) -> tuple[Client, dict[str, str]]:
    """Read the form and authenticate the client that sent it."""
    params = await read_form(request)
    credentials = authenticate_request(request.headers.get("authorization"), params)
    return await service.authenticate_client(state.pool, state.settings.pepper, credentials), params


async def _grant(request: Request, state: RegistryState) -> tuple[Client, service.IssuedToken]:
    params = await read_form(request)
    grant_type = params.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    credentials = authenticate_request(request.headers.get("authorization"), params)
    # Authenticate before judging the grant, so strangers learn nothing about the server.
    client = await service.authenticate_client(state.pool, state.settings.pepper, credentials)
    if grant_type != GRANT_TYPE:
        raise OAuthError(
            "unsupported_grant_type", f"only {GRANT_TYPE} is supported, not {grant_type!r}"
        )
    return client, service.issue_token(state.settings, state.keys, client, params.get("scope"))


@router.post("/oauth2/token")
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


@router.post("/oauth2/introspect")
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
    return JSONResponse(dict(state.keys.jwks()), headers={"Cache-Control": "public, max-age=300"})


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
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
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
