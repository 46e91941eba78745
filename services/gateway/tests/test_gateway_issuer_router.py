"""The registry verifier's cache lookup, which lets the issuer router skip decoding known tokens."""

import asyncio
import time
import uuid

from joserfc import jwt
from joserfc.jwk import RSAKey

from capps_gateway.auth import TokenVerifier
from capps_kit.settings import API_AUDIENCE

ISSUER = "http://registry.test"


class Keys:
    """A loaded key source whose generation a test can move."""

    def __init__(self, key: RSAKey) -> None:
        self.key = key
        self.generation = 0
        self.loaded = True

    async def key_for(self, kid: str) -> RSAKey | None:
        return self.key if kid == self.key.kid else None


def token(key: RSAKey, **claims: object) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": API_AUDIENCE,
        "sub": "app-1",
        "client_id": "app-1",
        "tid": "t-1",
        "roles": [],
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}, payload, key)


async def test_cached_answers_only_verified_fresh_tokens_of_current_keys() -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    keys = Keys(key)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=API_AUDIENCE, leeway_s=0)
    good = token(key)
    assert verifier.cached(good) is None  # never verified: the router must decode it
    principal = await verifier.verify(good)
    assert verifier.cached(good) == principal
    keys.generation += 1  # a key was withdrawn: earlier verifications no longer count
    assert verifier.cached(good) is None
    await verifier.verify(good)
    assert verifier.cached(good) == principal
    short = token(key, exp=int(time.time()) + 1)
    await verifier.verify(short)
    deadline = time.monotonic() + 10
    while verifier.cached(short) is not None:
        assert time.monotonic() < deadline, "an expired token stayed cached"
        await asyncio.sleep(0.1)
