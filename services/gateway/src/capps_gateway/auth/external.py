"""Verify tokens of external identity providers, and send each token to its issuer's verifier.

A token names its issuer in `iss`; that (unverified) name only picks which issuer's keys may
verify it, and the signed claims are then checked against that same issuer. An issuer the
gateway is not configured for is refused, never looked up.
"""

import base64
import binascii
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import orjson

from capps_events import normalise_issuer
from capps_gateway.auth.claim_mapping import check_external_header, map_external_claims
from capps_gateway.auth.claims import MAX_TOKEN_LENGTH, InvalidTokenError, Principal, is_fresh
from capps_gateway.auth.issuer_keys import IssuerKeys, IssuerKeysUnavailableError
from capps_gateway.auth.verifier import KeysUnavailableError, TokenVerifier, verified_payload

CACHE_SIZE = 20_000


def _segment(segment: str) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidTokenError("malformed token") from None


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, not yet verified: only to pick the issuer."""
    if not token:
        raise InvalidTokenError("empty token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidTokenError("token too long")
    if token.count(".") != 2:
        raise InvalidTokenError("not a signed JWT")
    header_segment, payload_segment, _ = token.split(".")
    header, claims = _segment(header_segment), _segment(payload_segment)
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidTokenError("malformed token")
    return header, claims


class ExternalTokenVerifier:
    """Verifies tokens of the configured external issuers; successes are cached until expiry."""

    def __init__(
        self,
        issuers: Iterable[IssuerKeys],
        *,
        all_permissions: frozenset[str],
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._issuers = {keys.config.issuer: keys for keys in issuers}
        self._rules = {issuer: keys.config.rules() for issuer, keys in self._issuers.items()}
        self._all_permissions = all_permissions
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._generations = {issuer: keys.generation for issuer, keys in self._issuers.items()}

    @property
    def issuers(self) -> list[IssuerKeys]:
        """The key holders of every configured issuer."""
        return list(self._issuers.values())

    def knows(self, issuer: str) -> bool:
        """Whether `issuer` (normalised) is a configured external issuer."""
        return issuer in self._issuers

    def cached(self, token: str) -> Principal | None:
        """A still valid earlier verification of `token`, or None."""
        principal = self._cache.get(token)
        if principal is None:
            return None
        assert principal.issuer is not None
        keys = self._issuers[principal.issuer]
        rules = self._rules[principal.issuer]
        # Stale or withdrawn keys void what they verified: the verification runs again.
        if (
            not keys.usable
            or keys.generation != self._generations[principal.issuer]
            or not is_fresh(principal, now=time.time(), leeway_s=rules.leeway_s)
        ):
            self._drop_stale(principal.issuer, keys)
            self._cache.pop(token, None)
            return None
        self._cache.move_to_end(token)
        return principal

    def _drop_stale(self, issuer: str, keys: IssuerKeys) -> None:
        if keys.generation != self._generations[issuer]:
            self._generations[issuer] = keys.generation
            for token in [t for t, p in self._cache.items() if p.issuer == issuer]:
                del self._cache[token]

    async def verify(self, token: str, header: dict[str, Any], claims: dict[str, Any]) -> Principal:
        """The caller behind `token`, whose unverified parts are `header` and `claims`."""
        iss = claims.get("iss")
        issuer = normalise_issuer(iss) if isinstance(iss, str) else ""
        keys = self._issuers.get(issuer)
        if keys is None:
            raise InvalidTokenError("unknown issuer")
        rules = self._rules[issuer]
        alg = check_external_header(header, rules)
        try:
            key = await keys.key_for(header["kid"], alg)
        except IssuerKeysUnavailableError:
            raise KeysUnavailableError(issuer) from None
        if key is None:
            raise InvalidTokenError("unknown signing key")
        verified = verified_payload(token, key, alg)
        principal = map_external_claims(
            verified, rules, now=time.time(), all_permissions=self._all_permissions
        )
        self._cache[token] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal


class IssuerRouter:
    """The gateway's token check: the registry's tokens and those of external issuers."""

    def __init__(self, registry: TokenVerifier, external: ExternalTokenVerifier) -> None:
        self._registry = registry
        self._external = external

    async def verify(self, token: str) -> Principal:
        """The caller behind `token`; raises InvalidTokenError or KeysUnavailableError."""
        # Cache hits first, so a token seen before is never decoded again to find its issuer.
        cached = self._registry.cached(token) or self._external.cached(token)
        if cached is not None:
            return cached
        header, claims = unverified_parts(token)
        iss = claims.get("iss")
        if isinstance(iss, str) and self._external.knows(normalise_issuer(iss)):
            return await self._external.verify(token, header, claims)
        # Anything else is the registry's to judge (it refuses an issuer not its own).
        return await self._registry.verify(token)
