"""Client assertion checks (RFC 7523) and registered key sets, with a fixed clock."""

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from capps_registry.oauth.assertions import (
    LEEWAY_S,
    MAX_LIFETIME_S,
    AssertionRefusedError,
    claimed_client_id,
    verify_assertion,
)
from capps_registry.oauth.client_auth import ClientAssertion, authenticate_request
from capps_registry.oauth.client_keys import KeySetError, checked_key_set, key_algorithms
from capps_registry.oauth.errors import OAuthError

NOW = 1_800_000_000.0
AUDIENCES = ("https://as.example/oauth2/token", "https://as.example")
KEY = ECKey.generate_key("P-256", parameters={"kid": "k1"})
PUBLIC = [KEY.as_dict(private=False)]


def signed(**overrides: Any) -> str:
    claims: dict[str, Any] = {
        "iss": "app-1",
        "sub": "app-1",
        "aud": AUDIENCES[0],
        "jti": "j-1",
        "iat": NOW,
        "exp": NOW + 60,
    }
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode({"alg": "ES256", "kid": "k1"}, claims, KEY, algorithms=["ES256"])


def refusal(value: str, now: float = NOW) -> str:
    with pytest.raises(AssertionRefusedError) as caught:
        verify_assertion(value, PUBLIC, "app-1", AUDIENCES, now)
    return caught.value.reason


def test_a_good_assertion_gives_its_jti_kept_past_exp_by_the_leeway() -> None:
    verified = verify_assertion(signed(), PUBLIC, "app-1", AUDIENCES, NOW)
    assert (verified.jti, verified.keep_until) == ("j-1", NOW + 60 + LEEWAY_S)


def test_leeway_is_small_and_symmetric() -> None:
    assert verify_assertion(signed(), PUBLIC, "app-1", AUDIENCES, NOW + 60 + LEEWAY_S - 1)
    assert refusal(signed(), NOW + 60 + LEEWAY_S) == "expired"
    assert verify_assertion(signed(iat=NOW + LEEWAY_S), PUBLIC, "app-1", AUDIENCES, NOW)
    assert refusal(signed(iat=NOW + LEEWAY_S + 1, exp=NOW + 90)) == "not_yet_valid"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "https://other.example"}, "bad_audience"),
        ({"aud": ["https://other.example"]}, "bad_audience"),
        ({"iss": "app-2"}, "bad_issuer"),
        ({"sub": "app-2"}, "bad_issuer"),
        ({"exp": None}, "expired"),
        ({"exp": "soon"}, "malformed"),
        ({"exp": True}, "malformed"),
        ({"exp": NOW + MAX_LIFETIME_S + LEEWAY_S + 1}, "too_long"),
        ({"iat": NOW - 200, "exp": NOW + 200}, "too_long"),
        ({"nbf": NOW + 120, "exp": NOW + 180}, "not_yet_valid"),
        ({"jti": None}, "no_jti"),
        ({"jti": ""}, "no_jti"),
        ({"jti": "x" * 201}, "no_jti"),
    ],
)
def test_each_claim_rule(overrides: dict[str, Any], reason: str) -> None:
    assert refusal(signed(**overrides)) == reason


def test_a_key_pinned_to_another_alg_refuses() -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r"})
    pinned = {**rsa.as_dict(private=False), "alg": "PS256"}
    value = jwt.encode({"alg": "RS256", "kid": "r"}, {"sub": "x"}, rsa, algorithms=["RS256"])
    with pytest.raises(AssertionRefusedError) as caught:
        verify_assertion(value, [pinned], "x", AUDIENCES, NOW)
    assert caught.value.reason == "bad_alg"
    assert key_algorithms(pinned) == ("PS256",)


@pytest.mark.parametrize("value", ["", "a.b", "not a jwt", "x" * 9000])
def test_garbage_is_malformed(value: str) -> None:
    assert refusal(value) == "malformed"


def test_the_claimed_client_is_sub_before_any_check() -> None:
    assert claimed_client_id(signed(iss="someone-else")) == "app-1"


def test_the_form_names_one_method() -> None:
    form = {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed(),
    }
    assert authenticate_request(None, form) == ClientAssertion("app-1", form["client_assertion"])
    with pytest.raises(OAuthError) as caught:
        authenticate_request(None, {**form, "client_id": "app-2"})
    assert caught.value.error == "invalid_client"
    with pytest.raises(OAuthError) as caught:
        authenticate_request("Basic YTpi", form)
    assert caught.value.error == "invalid_request"


def test_key_sets_refuse_what_is_not_a_public_signature_key() -> None:
    assert checked_key_set(PUBLIC) == PUBLIC
    cases: list[tuple[list[Any], str]] = [
        ([KEY.as_dict(private=True)], "private key material"),
        ([{**PUBLIC[0], "use": "enc"}], "use must be sig"),
        ([{**PUBLIC[0], "key_ops": ["sign"]}], "key_ops"),
        ([{**PUBLIC[0], "x5c": ["MII"]}], "unsupported members x5c"),
        ([PUBLIC[0], PUBLIC[0]], "used twice"),
        ([{**PUBLIC[0], "x": "A" * 3000}], "larger than"),
        ([{**PUBLIC[0], "x": "AAAA"}], "not a valid EC key"),
        (["not an object"], "JSON object"),
    ]
    for bad, words in cases:
        with pytest.raises(KeySetError, match=words):
            checked_key_set(bad)
