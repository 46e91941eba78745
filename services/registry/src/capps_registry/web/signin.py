"""Sign-in with the tenant admin client's credentials, and sign-out.

The registry obtains the admin token itself, in-process through the same service the token
endpoint uses, checks it like any bearer token, and keeps only what it said in a server-side
session. The sign-in form is protected against login CSRF by a double-submit cookie.
"""

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from capps_registry.metrics import TOKENS_ISSUED, TOKENS_REFUSED
from capps_registry.oauth import service as oauth_service
from capps_registry.oauth import throttle
from capps_registry.oauth.claims import TENANT_ADMIN_ROLE
from capps_registry.oauth.client_auth import ClientCredentials
from capps_registry.oauth.errors import OAuthError
from capps_registry.oauth.tokens import verify_token
from capps_registry.tenants import repository as tenants
from capps_registry.web.guard import CSRF_FIELD, RegistryDep, tokens_match
from capps_registry.web.rendering import PAGE_HEADERS, PageRoute, render
from capps_registry.web.sessions import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    close_session,
    load_session,
    new_token,
    open_session,
    set_cookie,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NOTICES = {
    "expired": "Your session has expired. Sign in again to continue.",
    "signed_out": "You are signed out.",
}
MAX_CREDENTIAL_LENGTH = 512
WRONG_CREDENTIALS = "The client ID or client secret is not right. Check both and try again."


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https (directly or via a trusted proxy)."""
    return request.url.scheme == "https"


def _signin_form(
    request: Request, notice: str | None, error: str | None, client_id: str, status: int
) -> Response:
    # A fresh double-submit token per form: the cookie and the hidden field must agree.
    token = new_token()
    response = render(
        request,
        "signin.html",
        {"notice": notice, "error": error, "client_id": client_id, "csrf_token": token},
        status=status,
    )
    set_cookie(response, SIGNIN_COOKIE, token, max_age=3600, secure=is_https(request))
    return response


@router.get("/signin")
async def signin_page(request: Request, state: RegistryDep, reason: str | None = None) -> Response:
    """The sign-in form; a live session goes straight to the list."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and await load_session(state.redis, cookie) is not None:
        return RedirectResponse("/", status_code=303, headers=dict(PAGE_HEADERS))
    return _signin_form(request, NOTICES.get(reason or ""), None, "", 200)


@router.post("/signin")
async def signin(
    request: Request,
    state: RegistryDep,
    client_id: Annotated[str, Form(max_length=MAX_CREDENTIAL_LENGTH)] = "",
    client_secret: Annotated[str, Form(max_length=MAX_CREDENTIAL_LENGTH)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = "",
) -> Response:
    """Exchange the admin client's credentials for a session; a clear message when wrong."""
    client_id = client_id.strip()
    if not tokens_match(request.cookies.get(SIGNIN_COOKIE, ""), csrf_token):
        return _signin_form(
            request, None, "The sign-in form expired. Please try again.", client_id, 403
        )
    if not client_id or not client_secret:
        return _signin_form(
            request, None, "Enter both the client ID and the client secret.", client_id, 400
        )
    # The token endpoint's own limiter and counters: guesses here and there add up.
    address = request.client.host if request.client else "unknown"
    limits = state.settings.auth_failure_limits
    wait = await throttle.over_limit(state.redis, limits, client_id, address)
    if wait is not None:
        TOKENS_REFUSED.labels("throttled").inc()
        response = _signin_form(
            request,
            None,
            f"Too many failed sign-ins. Wait {wait} seconds, then try again.",
            client_id,
            429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    credentials = ClientCredentials(client_id, client_secret.strip(), "client_secret_post")
    try:
        client = await oauth_service.authenticate_client(
            state.pool, state.settings.pepper, credentials
        )
    except OAuthError as exc:
        TOKENS_REFUSED.labels(getattr(exc, "reason", exc.error)).inc()
        if exc.error == "invalid_client":
            await throttle.record_failure(state.redis, client_id, address)
        return _signin_form(request, None, WRONG_CREDENTIALS, client_id, 401)
    if client.kind != "admin":
        TOKENS_REFUSED.labels("not_admin").inc()
        return _signin_form(
            request,
            None,
            "These are an application's credentials. Sign in with your tenant's admin client.",
            client_id,
            403,
        )
    issued = oauth_service.issue_token(state.settings, state.keys, client, TENANT_ADMIN_ROLE)
    TOKENS_ISSUED.labels(client.kind).inc()
    verified = verify_token(
        state.keys, issued.access_token, state.settings.issuer, state.settings.token_audience
    )
    session_id, _ = await open_session(
        state.redis,
        tenant_id=verified.tenant_id,
        client_id=verified.client_id,
        issued_at=float(verified.claims["iat"]),
        expires_at=float(verified.claims["exp"]),
        tenant_name=await tenants.tenant_name(state.pool, verified.tenant_id) or "",
    )
    response = RedirectResponse("/", status_code=303, headers=dict(PAGE_HEADERS))
    set_cookie(
        response, SESSION_COOKIE, session_id, max_age=issued.expires_in, secure=is_https(request)
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/")
    return response


@router.post("/signout")
async def signout(
    request: Request,
    state: RegistryDep,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = "",
) -> Response:
    """End the session at once and forget the cookie."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    session = await load_session(state.redis, cookie)
    if session is not None and tokens_match(session.csrf_token, csrf_token):
        await close_session(state.redis, cookie)
    elif session is not None:
        # A forged sign-out is refused like any other CSRF-less post.
        return RedirectResponse("/", status_code=303, headers=dict(PAGE_HEADERS))
    response = RedirectResponse(
        "/signin?reason=signed_out", status_code=303, headers=dict(PAGE_HEADERS)
    )
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
