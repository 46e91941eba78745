"""Verify bearer tokens: header checks, RS256 signature with joserfc, claim checks, LRU cache."""

import time
from collections import OrderedDict
from typing import Any, Protocol

import orjson
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from capps_gateway.auth.claims import (
    ALGORITHM,
    InvalidTokenError,
    Principal,
    check_claims,
    is_fresh,
    parse_header,
)

CACHE_SIZE = 20_000
LEEWAY_S = 30.0


class KeySource(Protocol):
    """Where verification keys come from (JwksKeyStore in production)."""

    @property
    def loaded(self) -> bool:
        """Whether any key set has been loaded."""
        ...

    @property
    def generation(self) -> int:
        """Changes whenever a key is withdrawn."""
        ...

    async def key_for(self, kid: str) -> RSAKey | None:
        """The key for `kid`, or None."""
        ...


class KeysUnavailableError(Exception):
    """No JWKS has been loaded yet, so the token can be neither accepted nor refused."""


class TokenVerifier:
    """Turns a bearer token into a Principal, or raises InvalidTokenError.

    A successful verification is cached per token until it expires, so the RS256 check
    (~32 µs) runs once per token rather than once per call; failures are not cached, and
    the cache is bounded (least recently used goes first).
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = LEEWAY_S,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._generation = keys.generation

    def cached(self, token: str) -> Principal | None:
        """An earlier verification of `token` that still holds, or None: no parsing at all."""
        if self._keys.generation != self._generation:
            return None
        principal = self._cache.get(token)
        if principal is None or not is_fresh(principal, now=time.time(), leeway_s=self._leeway):
            return None
        self._cache.move_to_end(token)
        return principal

    async def verify(self, token: str) -> Principal:
        """The caller behind `token`; raises InvalidTokenError or KeysUnavailableError."""
        now = time.time()
        if self._keys.generation != self._generation:
            self._cache.clear()
            self._generation = self._keys.generation
        cached = self._cache.get(token)
        if cached is not None:
            if is_fresh(cached, now=now, leeway_s=self._leeway):
                self._cache.move_to_end(token)
                return cached
            del self._cache[token]
            raise InvalidTokenError("token expired")
        header = parse_header(token)
        key = await self._keys.key_for(header["kid"])
        if key is None:
            if not self._keys.loaded:
                raise KeysUnavailableError
            raise InvalidTokenError("unknown signing key")
        claims = verified_payload(token, key, ALGORITHM)
        principal = check_claims(
            claims, issuer=self._issuer, audience=self._audience, now=now, leeway_s=self._leeway
        )
        self._cache[token] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal


def verified_payload(token: str, key: Any, algorithm: str) -> dict[str, Any]:
    """The claims of a compact JWS once its signature checks out with `key`; else why not.

    Registry tokens and external issuers' tokens alike: only what comes after differs.
    """
    try:
        signed = jws.deserialize_compact(token, key, algorithms=[algorithm])
    except JoseError as exc:
        reason = "bad signature" if exc.error == "bad_signature" else "malformed token"
        raise InvalidTokenError(reason) from None
    except ValueError:
        raise InvalidTokenError("malformed token") from None
    try:
        claims = orjson.loads(signed.payload or b"")
    except orjson.JSONDecodeError:
        raise InvalidTokenError("malformed claims") from None
    if not isinstance(claims, dict):
        raise InvalidTokenError("malformed claims")
    return claims
