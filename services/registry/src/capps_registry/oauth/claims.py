"""Access token claims (RFC 9068) and scope resolution, as pure functions."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from capps_catalog import TENANT_ADMIN_ROLE
from capps_events import token_predates
from capps_registry.oauth.errors import OAuthError

__all__ = ["TENANT_ADMIN_ROLE", "build_claims", "client_roles", "resolve_scope"]

TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JOSE media type, not a secret
MAX_SCOPE_LENGTH = 2048


def client_roles(kind: str, permissions: Sequence[str]) -> list[str]:
    """What a client may be granted: `Tenant.Admin` for an admin client, else its permissions."""
    return [TENANT_ADMIN_ROLE] if kind == "admin" else sorted(permissions)


def resolve_scope(requested: str | None, allowed: Sequence[str]) -> list[str]:
    """The roles to grant: all allowed when no scope is asked, else the asked subset (§3.3)."""
    if requested is None or not requested.strip():
        return list(allowed)
    if len(requested) > MAX_SCOPE_LENGTH:
        raise OAuthError("invalid_scope", "scope is too long")
    asked = list(dict.fromkeys(requested.split()))
    unknown = [name for name in asked if name not in allowed]
    if unknown:
        raise OAuthError("invalid_scope", "scope not granted to this client: " + " ".join(unknown))
    return sorted(asked)


def build_claims(
    *,
    issuer: str,
    audience: str,
    client_id: str,
    tenant_id: str,
    roles: Sequence[str],
    issued_at: float,
    ttl_seconds: int,
    jti: str | None = None,
) -> dict[str, Any]:
    """The claims of an access token for a client acting on its own behalf (sub = client)."""
    return {
        "iss": issuer,
        "aud": audience,
        "sub": client_id,
        "client_id": client_id,
        "tid": tenant_id,
        "roles": list(roles),
        # Milliseconds in `iat` (a NumericDate may have a fraction, RFC 7519 §2) order a token
        # exactly against a cut-off such as an app's disable, even within the same second.
        "iat": round(issued_at, 3),
        "exp": int(issued_at) + ttl_seconds,
        "jti": jti or str(uuid.uuid4()),
    }


def token_header(kid: str) -> dict[str, str]:
    """The JOSE header of an access token: RS256, the signing key's id and `typ: at+jwt`."""
    return {"alg": "RS256", "kid": kid, "typ": TOKEN_TYPE}


def issued_before(issued_at: object, cutoff: datetime) -> bool:
    """Whether a token's `iat` falls before `cutoff` (an app's tokens_valid_after), or is odd.

    The rule is shared with the gateway: `capps_events.token_predates`.
    """
    return token_predates(issued_at, cutoff)
