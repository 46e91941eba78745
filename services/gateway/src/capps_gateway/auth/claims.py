"""Pure checks of an RFC 9068 access token's header and claims; no I/O, no clock of its own."""

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

ALGORITHM = "RS256"
TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED_STRINGS = ("sub", "client_id", "tid", "jti")
MAX_TOKEN_LENGTH = 8192


class InvalidTokenError(Exception):
    """The token must be refused; the message says why (safe to show the caller)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the app (client_id), its tenant, the permissions and times of its token."""

    app_id: str
    tenant_id: str
    subject: str
    roles: frozenset[str]
    token_id: str
    issued_at: float
    expires_at: float
    issuer: str | None = None
    """The external identity provider that issued the token; None for the registry's own."""


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parse_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, checked for alg RS256, typ at+jwt and a kid."""
    if not token:
        raise InvalidTokenError("empty token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidTokenError("token too long")
    if token.count(".") != 2:
        raise InvalidTokenError("not a signed JWT")
    try:
        header = orjson.loads(_b64decode(token.partition(".")[0]))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidTokenError("malformed header") from None
    if not isinstance(header, dict):
        raise InvalidTokenError("malformed header")
    check_header(header)
    return header


def check_header(header: dict[str, Any]) -> None:
    """Refuse any algorithm but RS256, any type but at+jwt (RFC 9068 §4), and a missing kid."""
    if header.get("alg") != ALGORITHM:
        raise InvalidTokenError(f"algorithm must be {ALGORITHM}")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in TOKEN_TYPES:
        raise InvalidTokenError("token type must be at+jwt")
    check_key_id_and_crit(header)


def check_key_id_and_crit(header: dict[str, Any]) -> None:
    """Refuse a header without a key id, or with critical extensions we do not implement."""
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidTokenError("missing key id")
    if "crit" in header:
        raise InvalidTokenError("unsupported critical header")


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTokenError(f"claim {name} must be a number")
    return float(value)


def normalise_issuer(issuer: str) -> str:
    """An issuer as the registry states it: without a trailing slash."""
    return issuer.rstrip("/")


def check_claims(
    claims: dict[str, Any], *, issuer: str, audience: str, now: float, leeway_s: float
) -> Principal:
    """Check issuer, audience, time window and required claims; return the caller."""
    iss = claims.get("iss")
    if not isinstance(iss, str) or normalise_issuer(iss) != normalise_issuer(issuer):
        raise InvalidTokenError("wrong issuer")
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise InvalidTokenError("wrong audience")
    expires_at = _number(claims, "exp")
    if now > expires_at + leeway_s:
        raise InvalidTokenError("token expired")
    if "nbf" in claims and now + leeway_s < _number(claims, "nbf"):
        raise InvalidTokenError("token not valid yet")
    issued_at = _number(claims, "iat")
    for name in REQUIRED_STRINGS:
        value = claims.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidTokenError(f"claim {name} is missing")
    roles = claims.get("roles")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise InvalidTokenError("claim roles must be a list of strings")
    return Principal(
        app_id=claims["client_id"],
        tenant_id=claims["tid"],
        subject=claims["sub"],
        roles=frozenset(roles),
        token_id=claims["jti"],
        issued_at=issued_at,
        expires_at=expires_at,
    )


def is_fresh(principal: Principal, *, now: float, leeway_s: float) -> bool:
    """Whether a cached verification still holds at `now`."""
    return now <= principal.expires_at + leeway_s
