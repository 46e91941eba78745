"""Who is signed in, and whether a form really came from our own page (CSRF)."""

import hmac
from typing import Annotated

from fastapi import Depends, Request

from capps_registry.errors import request_id_of
from capps_registry.models import Principal
from capps_registry.oauth import repository as oauth_repository
from capps_registry.oauth.claims import TENANT_ADMIN_ROLE, issued_before
from capps_registry.state import RegistryState, registry_state
from capps_registry.web.rendering import PageError, SignInRequired
from capps_registry.web.sessions import SESSION_COOKIE, WebSession, close_session, load_session

CSRF_FIELD = "csrf_token"
SESSION_SCOPE_KEY = "capps_web_session"

RegistryDep = Annotated[RegistryState, Depends(registry_state)]


async def signed_in(request: Request, state: RegistryDep) -> WebSession:
    """The live session of a tenant admin whose client may still act; else to sign-in.

    The admin client is checked on every page, so disabling it or revoking its tokens ends
    its sessions at once, as it ends its tokens.
    """
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise SignInRequired(None)
    session = await load_session(state.redis, cookie)
    if session is None:
        raise SignInRequired("expired")
    client = await oauth_repository.find_client(state.pool, session.tenant_id, session.client_id)
    if (
        client is None
        or client.kind != "admin"
        or client.tenant_id != session.tenant_id
        or not client.enabled
        or issued_before(session.issued_at, client.tokens_valid_after)
    ):
        await close_session(state.redis, cookie)
        raise SignInRequired("expired")
    request.scope[SESSION_SCOPE_KEY] = session
    return session


AdminSession = Annotated[WebSession, Depends(signed_in)]


def acting_admin(request: Request, session: AdminSession) -> Principal:
    """The signed-in admin as the service layer's caller; the audit trail records it."""
    return Principal(
        session.tenant_id,
        session.client_id,
        (TENANT_ADMIN_ROLE,),
        request_id_of(request),
        via="page",
    )


Admin = Annotated[Principal, Depends(acting_admin)]


def tokens_match(expected: str, sent: object) -> bool:
    """Constant-time comparison of a CSRF token with what the form sent."""
    if not isinstance(sent, str) or not sent or not expected:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


async def checked_form(request: Request, session: AdminSession) -> dict[str, list[str]]:
    """The posted form, after its CSRF token matched the session's; 403 page otherwise."""
    form = await request.form(max_files=0, max_fields=200)
    fields: dict[str, list[str]] = {}
    for name in form:
        fields[name] = [value for value in form.getlist(name) if isinstance(value, str)]
    sent = fields.get(CSRF_FIELD, [""])
    if len(sent) != 1 or not tokens_match(session.csrf_token, sent[0]):
        raise PageError(
            403,
            "Form expired",
            "This form could not be verified (its security token is missing or stale). "
            "Reload the page and try again.",
        )
    return fields


CheckedForm = Annotated[dict[str, list[str]], Depends(checked_form)]
