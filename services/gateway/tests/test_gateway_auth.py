"""Token checks: header, claims, signature with joserfc, the verification cache, JWKS parsing."""

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from capps_gateway.auth import InvalidTokenError, KeysUnavailableError, TokenVerifier
from capps_gateway.auth.claims import check_claims, check_header, parse_header
from capps_gateway.auth.keys import JwksError, parse_jwks
from capps_kit.settings import API_AUDIENCE

ISSUER = "http://issuer.test"
AUDIENCE = API_AUDIENCE


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})


@pytest.fixture(scope="module")
def other_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"})


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "app-1",
        "client_id": "app-1",
        "tid": "tenant-1",
        "roles": ["Alert.Read.All"],
        "jti": "jti-1",
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: RSAKey, payload: dict[str, Any], **header: Any) -> str:
    return jwt.encode({"alg": "RS256", "kid": "k1", "typ": "at+jwt", **header}, payload, key)


class StaticKeys:
    """A key source with fixed keys, counting lookups."""

    def __init__(self, keys: dict[str, RSAKey], loaded: bool = True) -> None:
        self.keys = keys
        self.loaded = loaded
        self.generation = 0
        self.lookups = 0

    async def key_for(self, kid: str) -> RSAKey | None:
        self.lookups += 1
        return self.keys.get(kid)


def check(payload: dict[str, Any], now: float | None = None) -> None:
    check_claims(payload, issuer=ISSUER, audience=AUDIENCE, now=now or time.time(), leeway_s=30)


def test_valid_claims_give_principal() -> None:
    principal = check_claims(
        claims(roles=["A", "B"]), issuer=ISSUER, audience=AUDIENCE, now=time.time(), leeway_s=30
    )
    assert (principal.app_id, principal.tenant_id, principal.roles) == (
        "app-1",
        "tenant-1",
        frozenset({"A", "B"}),
    )


def test_audience_may_be_a_list() -> None:
    check(claims(aud=["other", AUDIENCE]))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "http://evil"}, "wrong issuer"),
        ({"aud": "other"}, "wrong audience"),
        ({"aud": ["other"]}, "wrong audience"),
        ({"exp": int(time.time()) - 60}, "token expired"),
        ({"exp": "soon"}, "claim exp must be a number"),
        ({"exp": None}, "claim exp must be a number"),
        # Far ahead: the parameters are made at collection, which a long run outlasts by minutes.
        ({"nbf": int(time.time()) + 30 * 86400}, "not valid yet"),
        ({"iat": None}, "claim iat must be a number"),
        ({"sub": None}, "claim sub is missing"),
        ({"client_id": ""}, "claim client_id is missing"),
        ({"tid": 5}, "claim tid is missing"),
        ({"jti": None}, "claim jti is missing"),
        ({"roles": None}, "roles must be a list"),
        ({"roles": "Alert.Read.All"}, "roles must be a list"),
        ({"roles": [1]}, "roles must be a list"),
    ],
)
def test_bad_claims_are_refused(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        check(claims(**overrides))


def test_small_clock_skew_is_tolerated() -> None:
    now = time.time()
    check(claims(exp=int(now) - 10, nbf=int(now) + 10), now=now)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "HS256", "typ": "at+jwt", "kid": "k"}, "algorithm must be RS256"),
        ({"alg": "none", "typ": "at+jwt", "kid": "k"}, "algorithm must be RS256"),
        ({"alg": "RS256", "typ": "JWT", "kid": "k"}, r"type must be at\+jwt"),
        ({"alg": "RS256", "kid": "k"}, r"type must be at\+jwt"),
        ({"alg": "RS256", "typ": "at+jwt"}, "missing key id"),
        ({"alg": "RS256", "typ": "at+jwt", "kid": "k", "crit": ["x"]}, "critical"),
    ],
)
def test_bad_headers_are_refused(header: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        check_header(header)


def test_application_at_jwt_type_is_accepted() -> None:
    check_header({"alg": "RS256", "typ": "application/at+JWT", "kid": "k"})


@pytest.mark.parametrize(
    "token", ["", "garbage", "a.b", "a.b.c.d", "!!!.x.y", "e30.x.y", "W10.x.y", "x" * 9000]
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        parse_header(token)


async def test_verifier_accepts_and_caches(key: RSAKey) -> None:
    keys = StaticKeys({"k1": key})
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
    token = sign(key, claims())
    first = await verifier.verify(token)
    second = await verifier.verify(token)
    assert first is second
    assert keys.lookups == 1


async def test_verifier_refuses_forged_signature(key: RSAKey, other_key: RSAKey) -> None:
    verifier = TokenVerifier(StaticKeys({"k1": key}), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(InvalidTokenError, match="bad signature"):
        await verifier.verify(sign(other_key, claims()))


async def test_verifier_refuses_unknown_kid(key: RSAKey) -> None:
    verifier = TokenVerifier(StaticKeys({"k1": key}), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(InvalidTokenError, match="unknown signing key"):
        await verifier.verify(sign(key, claims(), kid="k2"))


async def test_verifier_says_unavailable_before_keys_load(key: RSAKey) -> None:
    verifier = TokenVerifier(StaticKeys({}, loaded=False), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(KeysUnavailableError):
        await verifier.verify(sign(key, claims()))


async def test_cached_token_expires(key: RSAKey, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(StaticKeys({"k1": key}), issuer=ISSUER, audience=AUDIENCE, leeway_s=0)
    now = time.time()
    token = sign(key, claims(exp=int(now) + 60))
    await verifier.verify(token)
    monkeypatch.setattr("capps_gateway.auth.verifier.time.time", lambda: now + 61)
    with pytest.raises(InvalidTokenError, match="expired"):
        await verifier.verify(token)


async def test_cache_is_bounded_and_dropped_when_a_key_is_withdrawn(key: RSAKey) -> None:
    keys = StaticKeys({"k1": key})
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, cache_size=2)
    tokens = [sign(key, claims(jti=f"j{i}")) for i in range(3)]
    for token in tokens:
        await verifier.verify(token)
    assert keys.lookups == 3
    await verifier.verify(tokens[0])  # evicted: verified again
    assert keys.lookups == 4
    keys.generation += 1
    await verifier.verify(tokens[0])
    assert keys.lookups == 5


def test_parse_jwks_keeps_rsa_signing_keys(key: RSAKey) -> None:
    public = key.as_dict(private=False)
    document = {
        "keys": [
            public,
            {**public, "kid": "enc", "use": "enc"},
            {**public, "kid": "es", "alg": "ES256"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "a", "y": "b"},
            {**public, "kid": None},
            {"kty": "RSA", "kid": "broken", "n": "x"},
            "nonsense",
        ]
    }
    assert list(parse_jwks(document)) == ["k1"]


@pytest.mark.parametrize("document", [None, [], {}, {"keys": "x"}])
def test_parse_jwks_refuses_non_jwks(document: object) -> None:
    with pytest.raises(JwksError):
        parse_jwks(document)


@pytest.mark.parametrize(
    ("configured", "claimed"), [(ISSUER + "/", ISSUER), (ISSUER, ISSUER + "/")]
)
def test_the_issuer_is_compared_without_a_trailing_slash(configured: str, claimed: str) -> None:
    found = check_claims(
        claims(iss=claimed), issuer=configured, audience=AUDIENCE, now=time.time(), leeway_s=30
    )
    assert found.app_id


def test_an_issuer_that_only_starts_like_ours_is_refused() -> None:
    with pytest.raises(InvalidTokenError, match="wrong issuer"):
        check_claims(
            claims(iss=ISSUER + "/evil"),
            issuer=ISSUER,
            audience=AUDIENCE,
            now=time.time(),
            leeway_s=30,
        )
