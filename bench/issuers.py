"""Token checks per second, in process: the registry's tokens alone and routed beside external
issuers, and an external issuer's tokens cached and verified from scratch (RS256).

The routed registry check against the registry check alone is what configuring external
issuers costs every call; the rest puts an external token's cost beside the registry's.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

from bench.progress import say
from bench.results import rate_entry
from capps_gateway.auth.external import ExternalTokenVerifier, IssuerRouter
from capps_gateway.auth.issuer_keys import IssuerKeys
from capps_gateway.auth.issuers import IssuerConfig
from capps_gateway.auth.verifier import TokenVerifier

SCENARIO_KEYS = (
    "token_registry",
    "token_registry_routed",
    "token_external_cached",
    "token_external_first",
)
ROUNDS = 3
CALLS = 20_000
FRESH_TOKENS = 1_000
AUDIENCE = "capps-platform-api"


class _FixedKeys:
    """The registry's key source, already loaded."""

    def __init__(self, key: RSAKey) -> None:
        self._key = key

    @property
    def loaded(self) -> bool:
        return True

    @property
    def generation(self) -> int:
        return 0

    async def key_for(self, kid: str) -> RSAKey | None:
        return self._key if kid == self._key.kid else None


def _token(key: RSAKey, issuer: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "bench-app",
        "client_id": "bench-app",
        "tid": "bench-tenant",
        "roles": ["Alert.Read.All"],
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}, payload, key)


@contextlib.asynccontextmanager
async def _provider(key: RSAKey) -> AsyncIterator[str]:
    """Discovery and JWKS of one issuer on a free loopback port; yields the issuer URL."""
    base: list[str] = []

    async def discovery(_: web.Request) -> web.Response:
        return web.json_response({"issuer": base[0], "jwks_uri": base[0] + "/jwks"})

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response({"keys": [key.as_dict(private=False)]})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base.append(f"http://127.0.0.1:{port}")
    try:
        yield base[0]
    finally:
        await runner.cleanup()


async def _rate(check: Callable[[str], Awaitable[Any]], tokens: list[str], calls: int) -> float:
    started = time.perf_counter()
    for number in range(calls):
        await check(tokens[number % len(tokens)])
    return calls / (time.perf_counter() - started)


async def _measure() -> dict[str, list[float]]:
    registry_key = RSAKey.generate_key(2048, parameters={"kid": "registry"})
    external_key = RSAKey.generate_key(2048, parameters={"kid": "external"})
    registry_issuer = "http://registry.bench"
    registry = TokenVerifier(_FixedKeys(registry_key), issuer=registry_issuer, audience=AUDIENCE)
    async with _provider(external_key) as issuer, aiohttp.ClientSession() as session:
        keys = IssuerKeys(session, IssuerConfig(issuer=issuer, audience=AUDIENCE))
        await keys.refresh()
        external = ExternalTokenVerifier([keys], all_permissions=frozenset({"Alert.Read.All"}))
        router = IssuerRouter(registry, external)
        registry_token = [_token(registry_key, registry_issuer)]
        external_token = [_token(external_key, issuer)]
        say(f"token checks: signing {FRESH_TOKENS} fresh external tokens")
        fresh = [_token(external_key, issuer) for _ in range(FRESH_TOKENS * ROUNDS)]
        rates: dict[str, list[float]] = {key: [] for key in SCENARIO_KEYS}
        for number in range(ROUNDS):
            say(f"token checks: round {number + 1} of {ROUNDS}")
            rates["token_registry"].append(await _rate(registry.verify, registry_token, CALLS))
            rates["token_registry_routed"].append(await _rate(router.verify, registry_token, CALLS))
            rates["token_external_cached"].append(await _rate(router.verify, external_token, CALLS))
            batch = fresh[number * FRESH_TOKENS : (number + 1) * FRESH_TOKENS]
            rates["token_external_first"].append(await _rate(router.verify, batch, len(batch)))
    return rates


def measure_token_checks() -> dict[str, dict[str, Any]]:
    """The four token-check scenarios as table entries."""
    return {key: rate_entry(key, rates) for key, rates in asyncio.run(_measure()).items()}
