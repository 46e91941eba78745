"""One external issuer's signing keys: OpenID discovery, then its JWKS, refreshed and aged out.

Keys are held per issuer, so a key published by issuer A can only ever verify a token that
names issuer A. When fetching fails, the last good keys serve for a bounded time
(`max_stale_s` after they were fetched), then no token of that issuer is accepted until a
fetch succeeds again: never fail open.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from capps_events import normalise_issuer
from capps_gateway import metrics
from capps_gateway.auth.issuers import IssuerConfig, check_url
from capps_kit.retry import backoff_delay

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 5.0
MAX_DOCUMENT_BYTES = 512 * 1024
MAX_KEYS = 100
# An issuer's key endpoint belongs to a third party: after repeated failures ask it at most
# every 30 s (never later than the next scheduled refresh) rather than hammer it.
ISSUER_MAX_RETRY_DELAY_S = 30.0
VerificationKey = RSAKey | ECKey | OKPKey

# Which key type (and curve) each algorithm needs: a key never verifies another family's alg.
_KEY_TYPE_OF = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), ("RSA", None)),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}


class KeyFetchError(Exception):
    """Discovery or the JWKS could not be fetched, or holds nothing usable."""


class IssuerKeysUnavailableError(Exception):
    """The issuer's keys were never fetched, or are older than allowed: its tokens wait."""


def key_fits(key: VerificationKey, alg: str) -> bool:
    """Whether `key` may verify a signature made with `alg`."""
    kty, crv = _KEY_TYPE_OF[alg]
    if key.key_type != kty:
        return False
    if crv is not None and key.get("crv") != crv:
        return False
    declared = key.get("alg")
    return declared is None or declared == alg


def parse_jwks(document: Any, algorithms: frozenset[str]) -> dict[str, VerificationKey]:
    """The signing keys of a JWKS usable with one of `algorithms`, by kid; others are skipped.

    Raises KeyFetchError when none is left: an empty set would refuse every token, while the
    last good keys may still serve.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyFetchError("JWKS document has no 'keys' list")
    kinds = {_KEY_TYPE_OF[alg][0] for alg in algorithms}
    keys: dict[str, VerificationKey] = {}
    for entry in document["keys"][:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("kty") not in kinds:
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig":
            continue
        if "d" in entry:
            continue  # a private key published by mistake is not one to trust
        try:
            key = JWKRegistry.import_key(entry)
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("skipping unusable JWKS key", extra={"kid": kid, "reason": str(exc)})
            continue
        if isinstance(key, RSAKey | ECKey | OKPKey) and any(key_fits(key, a) for a in algorithms):
            keys[kid] = key
    if not keys:
        raise KeyFetchError("JWKS holds no key usable with the allowed algorithms")
    return keys


def jwks_uri_of(document: Any, issuer: str) -> str:
    """The `jwks_uri` of a discovery document naming this very issuer (OpenID Discovery §4.3)."""
    if not isinstance(document, dict):
        raise KeyFetchError("discovery document is not a JSON object")
    named = document.get("issuer")
    if not isinstance(named, str) or normalise_issuer(named) != issuer:
        raise KeyFetchError(f"discovery document names issuer {str(named)[:200]!r}")
    uri = document.get("jwks_uri")
    if not isinstance(uri, str):
        raise KeyFetchError("discovery document has no jwks_uri")
    try:
        return check_url(uri, "jwks_uri")
    except ValueError as exc:
        raise KeyFetchError(str(exc)) from None


async def fetch_json(session: aiohttp.ClientSession, url: str) -> Any:
    """A JSON document of at most MAX_DOCUMENT_BYTES; KeyFetchError on any failure."""
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S), allow_redirects=False
        ) as response:
            if response.status != 200:
                raise KeyFetchError(f"{url} answered HTTP {response.status}")
            body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise KeyFetchError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise KeyFetchError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise KeyFetchError(f"{url} did not answer JSON") from None


class IssuerKeys:
    """The current keys of one issuer; `run()` keeps them fresh, `key_for()` reads them."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: IssuerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._session = session
        self._clock = clock
        self._algorithms = frozenset(config.algorithms)
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: float | None = None
        self._last_attempt = float("-inf")
        self._generation = 0
        self._lock = asyncio.Lock()

    @property
    def usable(self) -> bool:
        """Whether keys were fetched and are not older than `max_stale_s`."""
        fetched_at = self._fetched_at
        return fetched_at is not None and self._clock() - fetched_at <= self.config.max_stale_s

    @property
    def generation(self) -> int:
        """Bumped whenever a fetch withdraws a key, so verifications made with it are dropped."""
        return self._generation

    async def key_for(self, kid: str, alg: str) -> VerificationKey | None:
        """The key `kid` if it may verify `alg`; refetches (once per cooldown) when unknown.

        Raises IssuerKeysUnavailableError when no fresh enough keys are held.
        """
        key = self._keys.get(kid) if self.usable else None
        if key is None:
            await self._refetch()
            if not self.usable:
                raise IssuerKeysUnavailableError(self.config.issuer)
            key = self._keys.get(kid)
        if key is None or not key_fits(key, alg):
            return None
        return key

    async def _refetch(self) -> None:
        async with self._lock:
            # Tokens naming made-up kids are free to send: they must not make the gateway a
            # load generator against the provider, hence one fetch per cooldown at most.
            if self._clock() - self._last_attempt < self.config.refetch_cooldown_s:
                return
            try:
                await self._fetch_locked()
            except KeyFetchError as exc:
                log.warning(
                    "issuer keys refetch failed",
                    extra={"issuer": self.config.issuer, "reason": str(exc)},
                )

    async def refresh(self) -> None:
        """Fetch discovery and keys now; KeyFetchError on failure (the last good keys stay)."""
        async with self._lock:
            await self._fetch_locked()

    async def run(self) -> None:
        """Fetch at start, then every `refresh_s`; retry failures with backoff, forever."""
        failures = 0
        while True:
            try:
                await self.refresh()
                failures = 0
                delay = self.config.refresh_s
            except KeyFetchError as exc:
                failures += 1
                delay = min(
                    backoff_delay(failures, cap_s=ISSUER_MAX_RETRY_DELAY_S), self.config.refresh_s
                )
                log.warning(
                    "issuer keys not fetched",
                    extra={
                        "issuer": self.config.issuer,
                        "reason": str(exc),
                        "usable": self.usable,
                        "retry_in_s": delay,
                    },
                )
            await asyncio.sleep(delay)

    async def _fetch_locked(self) -> None:
        self._last_attempt = self._clock()
        issuer = self.config.issuer
        try:
            discovery = await fetch_json(self._session, self.config.discovery)
            jwks_uri = jwks_uri_of(discovery, issuer)
            keys = parse_jwks(await fetch_json(self._session, jwks_uri), self._algorithms)
        except KeyFetchError:
            metrics.ISSUER_KEY_FETCHES.labels(issuer, "error").inc()
            raise
        removed = self._keys.keys() - keys.keys()
        self._keys = keys
        self._fetched_at = self._clock()
        metrics.ISSUER_KEY_FETCHES.labels(issuer, "ok").inc()
        metrics.ISSUER_KEYS_FETCHED_AT.labels(issuer).set(time.time())
        if removed:
            self._generation += 1
        log.info("issuer keys loaded", extra={"issuer": issuer, "kids": sorted(keys)})
