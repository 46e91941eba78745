"""Pure checks and mapping of an external provider's access token to a Principal; no I/O, no clock.

Providers name the same things differently: the app is `client_id` (RFC 9068), `azp` (OpenID)
or `appid` (Entra ID v1); the tenant is `tid` or fixed per provider; permissions are `roles`
(a list), `scp` or RFC 9068's `scope` (space-separated strings). Each issuer's configuration
says which to read, in order; the first claim present wins.
"""

from dataclasses import dataclass
from typing import Any, Literal

from capps_events import normalise_issuer
from capps_gateway.auth.claims import TOKEN_TYPES, InvalidTokenError, Principal
from capps_gateway.auth.claims import _number as number_claim

AppIdClaim = Literal["client_id", "azp", "appid"]
PermissionClaim = Literal["roles", "scp", "scope"]
SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Asymmetric algorithms only: a shared secret (HS*) or `none` is never a provider's signature."""
PLAIN_JWT_TYPES = frozenset({"jwt", "application/jwt"})
MAX_ID_LENGTH = 200
MAX_PERMISSIONS = 200


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What one issuer's tokens must look like and how their claims map to a caller."""

    issuer: str
    """Normalised (see `normalise_issuer`)."""
    audience: str
    algorithms: frozenset[str]
    leeway_s: float
    app_id_claims: tuple[AppIdClaim, ...]
    tenant_claim: str | None
    fixed_tenant: str | None
    permission_claims: tuple[PermissionClaim, ...]
    """Empty: tokens do not narrow, the app's permissions in the registry decide alone."""
    require_at_jwt: bool


def check_external_header(header: dict[str, Any], rules: TokenRules) -> str:
    """Refuse an algorithm the issuer does not allow, a wrong type or no kid; return the alg."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in rules.algorithms:
        raise InvalidTokenError("algorithm not allowed for this issuer")
    typ = header.get("typ")
    accepted = TOKEN_TYPES if rules.require_at_jwt else TOKEN_TYPES | PLAIN_JWT_TYPES
    untyped_ok = typ is None and not rules.require_at_jwt
    if not untyped_ok and (not isinstance(typ, str) or typ.lower() not in accepted):
        raise InvalidTokenError("token type must be at+jwt")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidTokenError("missing key id")
    if "crit" in header:
        raise InvalidTokenError("unsupported critical header")
    return alg


def _identifier(claims: dict[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidTokenError(f"claim {name} must be a non-empty string")
    return value


def app_id_of(claims: dict[str, Any], names: tuple[AppIdClaim, ...]) -> str:
    """The app's client id from the first of `names` the token carries."""
    for name in names:
        if name in claims:
            return _identifier(claims, name)
    raise InvalidTokenError(f"the token names no app ({', '.join(names)})")


def tenant_of(claims: dict[str, Any], rules: TokenRules) -> str:
    """The fixed tenant of the issuer, or the tenant claim's value."""
    if rules.fixed_tenant is not None:
        return rules.fixed_tenant
    assert rules.tenant_claim is not None  # the configuration guarantees one of the two
    if rules.tenant_claim not in claims:
        raise InvalidTokenError(f"claim {rules.tenant_claim} is missing")
    return _identifier(claims, rules.tenant_claim)


def permissions_of(
    claims: dict[str, Any], names: tuple[PermissionClaim, ...]
) -> frozenset[str] | None:
    """The permissions the first of `names` present grants (list or space-separated string).

    None when `names` is empty (the token does not narrow); an empty set when the token
    carries none of them: a token that grants nothing opens nothing.
    """
    if not names:
        return None
    for name in names:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, str):
            items = value.split()
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            items = value
        else:
            raise InvalidTokenError(f"claim {name} must be a string or a list of strings")
        if len(items) > MAX_PERMISSIONS:
            raise InvalidTokenError(f"claim {name} holds too many values")
        return frozenset(items)
    return frozenset()


def audience_matches(aud: Any, audience: str) -> bool:
    """Whether `aud` (a string or a list of strings) names `audience`."""
    return aud == audience or (isinstance(aud, list) and audience in aud)


def map_external_claims(
    claims: dict[str, Any], rules: TokenRules, *, now: float, all_permissions: frozenset[str]
) -> Principal:
    """Check issuer, audience and time window, then map the claims to the caller.

    `all_permissions` stands for a token that does not narrow (no permission claim configured).
    """
    iss = claims.get("iss")
    if not isinstance(iss, str) or normalise_issuer(iss) != rules.issuer:
        raise InvalidTokenError("wrong issuer")
    if not audience_matches(claims.get("aud"), rules.audience):
        raise InvalidTokenError("wrong audience")
    leeway = rules.leeway_s
    expires_at = number_claim(claims, "exp")
    if now > expires_at + leeway:
        raise InvalidTokenError("token expired")
    if "nbf" in claims and now + leeway < number_claim(claims, "nbf"):
        raise InvalidTokenError("token not valid yet")
    issued_at = number_claim(claims, "iat")
    if issued_at > now + leeway:
        raise InvalidTokenError("token issued in the future")
    app_id = app_id_of(claims, rules.app_id_claims)
    tenant_id = tenant_of(claims, rules)
    permissions = permissions_of(claims, rules.permission_claims)
    subject = _identifier(claims, "sub") if "sub" in claims else app_id
    token_id = claims.get("jti")
    return Principal(
        app_id=app_id,
        tenant_id=tenant_id,
        subject=subject,
        roles=all_permissions if permissions is None else permissions,
        token_id=token_id if isinstance(token_id, str) else "",
        issued_at=issued_at,
        expires_at=expires_at,
        issuer=rules.issuer,
    )
