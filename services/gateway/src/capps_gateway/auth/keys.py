"""The registry's signing keys, fetched from its JWKS at start and again on an unknown `kid`."""

import asyncio
import logging
import time
from typing import Any

import aiohttp
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from capps_gateway import metrics
from capps_kit.retry import READINESS_MAX_DELAY_S, backoff_delay

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 5.0
MIN_REFRESH_INTERVAL_S = 5.0


class JwksError(Exception):
    """The JWKS could not be fetched or holds no usable key."""


def parse_jwks(document: Any) -> dict[str, RSAKey]:
    """The usable RS256 signing keys of a JWKS document, by kid; other keys are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("JWKS document has no 'keys' list")
    keys: dict[str, RSAKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg", "RS256") != "RS256":
            continue
        try:
            keys[kid] = RSAKey.import_key(entry)
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("skipping unusable JWKS key", extra={"kid": kid, "reason": str(exc)})
    return keys


class JwksKeyStore:
    """Holds the verification keys; refetches at most once per interval when a kid is unknown.

    The rate limit matters: tokens with made-up kids are free to send, and must not turn the
    gateway into a load generator against the registry.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        min_refresh_interval_s: float = MIN_REFRESH_INTERVAL_S,
    ) -> None:
        self._session = session
        self._url = url
        self._min_interval = min_refresh_interval_s
        self._generation = 0
        self._keys: dict[str, RSAKey] = {}
        self._loaded = False
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        """Whether a JWKS has been fetched at least once."""
        return self._loaded

    @property
    def generation(self) -> int:
        """Bumped whenever a refetch withdraws a key, so verifiers drop what they cached."""
        return self._generation

    def get(self, kid: str) -> RSAKey | None:
        """The key for `kid` if known now."""
        return self._keys.get(kid)

    async def load_until_ready(self) -> None:
        """Fetch the JWKS at start, retrying with backoff until the registry answers."""
        attempt = 0
        while not self._loaded:
            try:
                await self.refresh()
            except JwksError as exc:
                attempt += 1
                delay = backoff_delay(attempt, cap_s=READINESS_MAX_DELAY_S)
                log.warning(
                    "JWKS not loaded yet, retrying",
                    extra={"url": self._url, "reason": str(exc), "retry_in_s": delay},
                )
                await asyncio.sleep(delay)

    async def key_for(self, kid: str) -> RSAKey | None:
        """The key for `kid`, refetching the JWKS first if it is unknown and not fetched lately."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            # Another caller may have refetched while this one waited for the lock.
            key = self._keys.get(kid)
            if key is not None or time.monotonic() - self._last_attempt < self._min_interval:
                return key
            try:
                await self._fetch_locked()
            except JwksError as exc:
                log.warning("JWKS refetch failed", extra={"url": self._url, "reason": str(exc)})
            return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch the JWKS now, replacing the keys; raise JwksError on failure."""
        async with self._lock:
            await self._fetch_locked()

    async def _fetch_locked(self) -> None:
        self._last_attempt = time.monotonic()
        try:
            async with self._session.get(
                self._url, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
            ) as response:
                if response.status != 200:
                    raise JwksError(f"JWKS answered HTTP {response.status}")
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            metrics.JWKS_FETCHES.labels("error").inc()
            raise JwksError(f"cannot fetch JWKS: {type(exc).__name__}: {exc}") from None
        keys = parse_jwks(document)
        if not keys:
            metrics.JWKS_FETCHES.labels("error").inc()
            raise JwksError("JWKS holds no RS256 signing key")
        removed = self._keys.keys() - keys.keys()
        self._keys = keys
        self._loaded = True
        metrics.JWKS_FETCHES.labels("ok").inc()
        log.info("JWKS loaded", extra={"kids": sorted(keys)})
        if removed:
            # A withdrawn key may be a compromised one: verifications made with it must go.
            self._generation += 1
