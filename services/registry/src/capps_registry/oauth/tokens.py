"""Signing access tokens and verifying the registry's own tokens."""

import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from capps_registry.oauth.claims import TOKEN_TYPE, token_header
from capps_registry.oauth.keys import SigningKeys

ALGORITHMS = ["RS256"]
LEEWAY_S = 30


class InvalidAccessTokenError(ValueError):
    """The token is malformed, badly signed, expired or not ours; the message says which."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The claims of a token that passed every check."""

    claims: dict[str, Any]

    @property
    def tenant_id(self) -> str:
        """The tenant the token acts in."""
        return str(self.claims["tid"])

    @property
    def client_id(self) -> str:
        """The client the token was issued to."""
        return str(self.claims["client_id"])

    @property
    def roles(self) -> list[str]:
        """The roles granted by the token."""
        roles = self.claims.get("roles")
        return [str(role) for role in roles] if isinstance(roles, list) else []


def sign_token(keys: SigningKeys, claims: dict[str, Any]) -> str:
    """Sign `claims` as an RS256 JWT with the active key."""
    return jwt.encode(token_header(keys.kid), claims, keys.active, algorithms=ALGORITHMS)


def verify_token(
    keys: SigningKeys, token: str, issuer: str, audience: str, now: int | None = None
) -> VerifiedToken:
    """Check signature, `typ`, issuer, audience and lifetime; raise InvalidAccessToken if bad."""
    try:
        decoded = jwt.decode(token, keys.key_set, algorithms=ALGORITHMS)
    except (JoseError, ValueError) as exc:
        raise InvalidAccessTokenError(f"token does not verify: {type(exc).__name__}") from None
    if str(decoded.header.get("typ", "")).lower() not in (TOKEN_TYPE, f"application/{TOKEN_TYPE}"):
        raise InvalidAccessTokenError("token is not an access token (typ)")
    registry = JWTClaimsRegistry(
        now=now if now is not None else int(time.time()),
        leeway=LEEWAY_S,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        sub={"essential": True},
        client_id={"essential": True},
        tid={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise InvalidAccessTokenError(f"token claims are not valid: {exc.description}") from None
    return VerifiedToken(decoded.claims)
