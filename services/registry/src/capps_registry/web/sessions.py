"""Server-side sessions of the page in Redis, and the cookie that names one.

The cookie holds only a random session id; Redis holds, under a hash of that id, what the
verified admin token said (tenant, client, issued and expiry times) and the session's CSRF
token — never the token itself, which the page does not need after checking it. The session
lives exactly as long as the token it came from; sign-out deletes it at once.
"""

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass

import redis.asyncio as redis
from starlette.responses import Response

SESSION_COOKIE = "capps_session"
SIGNIN_COOKIE = "capps_signin"
KEY_PREFIX = "capps:web:session:"
MAX_COOKIE_LENGTH = 128


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in tenant admin."""

    tenant_id: str
    client_id: str
    issued_at: float
    expires_at: float
    csrf_token: str
    tenant_name: str = ""
    """For the page's header; sessions stored before it was kept have none."""


def session_key(session_id: str) -> str:
    """The Redis key of a session: a hash, so the store never holds a usable cookie value."""
    return KEY_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def new_token() -> str:
    """A random, URL-safe value of 256 bits (session ids and CSRF tokens)."""
    return secrets.token_urlsafe(32)


async def open_session(
    client: "redis.Redis",
    *,
    tenant_id: str,
    client_id: str,
    issued_at: float,
    expires_at: float,
    tenant_name: str = "",
) -> tuple[str, WebSession]:
    """Store a new session that ends when the admin token ends; (cookie value, session)."""
    session_id = new_token()
    session = WebSession(tenant_id, client_id, issued_at, expires_at, new_token(), tenant_name)
    ttl = max(1, int(expires_at - time.time()))
    await client.set(session_key(session_id), json.dumps(asdict(session)), ex=ttl)
    return session_id, session


async def load_session(client: "redis.Redis", session_id: str) -> WebSession | None:
    """The live session named by the cookie value, or None (unknown, expired or malformed)."""
    if not session_id or len(session_id) > MAX_COOKIE_LENGTH:
        return None
    raw = await client.get(session_key(session_id))
    if raw is None:
        return None
    try:
        session = WebSession(**json.loads(raw))
    except (TypeError, ValueError):
        return None
    return session if session.expires_at > time.time() else None


async def close_session(client: "redis.Redis", session_id: str) -> None:
    """Forget the session at once (sign-out)."""
    if session_id and len(session_id) <= MAX_COOKIE_LENGTH:
        await client.delete(session_key(session_id))


def set_cookie(response: Response, name: str, value: str, *, max_age: int, secure: bool) -> None:
    """HttpOnly, SameSite=Strict, path /, and Secure whenever the page is served over https."""
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict"
    )
