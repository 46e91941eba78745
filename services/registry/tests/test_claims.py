"""Claims building, scope resolution, and signing/verifying tokens with a generated key."""

import time
from datetime import UTC, datetime

import pytest
from joserfc import jwt

from capps_kit.settings import API_AUDIENCE
from capps_registry.oauth.claims import (
    TENANT_ADMIN_ROLE,
    build_claims,
    client_roles,
    resolve_scope,
    token_header,
)
from capps_registry.oauth.errors import OAuthError
from capps_registry.oauth.keys import (
    KeyDecryptionError,
    SigningKeys,
    StoredKey,
    generate_key,
    key_cipher,
    open_key,
    seal_key,
)
from capps_registry.oauth.tokens import InvalidAccessTokenError, sign_token, verify_token

ISSUER = "https://registry.example"
AUDIENCE = API_AUDIENCE


@pytest.fixture(scope="module")
def keys() -> SigningKeys:
    key = generate_key()
    return SigningKeys(key, [key])


def claims(**overrides: object) -> dict[str, object]:
    made = build_claims(
        issuer=ISSUER,
        audience=AUDIENCE,
        client_id="c1",
        tenant_id="t1",
        roles=["Alert.Read.All"],
        issued_at=int(time.time()),
        ttl_seconds=600,
    )
    made.update(overrides)
    return made


def test_roles_of_admin_and_app_clients() -> None:
    assert client_roles("admin", ["Alert.Read.All"]) == [TENANT_ADMIN_ROLE]
    assert client_roles("app", ["b", "a"]) == ["a", "b"]


def test_claims_have_every_required_field() -> None:
    made = build_claims(
        issuer=ISSUER,
        audience=AUDIENCE,
        client_id="c1",
        tenant_id="t1",
        roles=["r"],
        issued_at=1000,
        ttl_seconds=60,
        jti="j",
    )
    assert made == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "c1",
        "client_id": "c1",
        "tid": "t1",
        "roles": ["r"],
        "iat": 1000,
        "exp": 1060,
        "jti": "j",
    }

    def jti() -> object:
        return build_claims(
            issuer=ISSUER,
            audience=AUDIENCE,
            client_id="c",
            tenant_id="t",
            roles=[],
            issued_at=0,
            ttl_seconds=1,
        )["jti"]

    # Same inputs, same second: the token id still differs.
    assert jti() != jti()


def test_scope_defaults_to_everything_and_narrows_to_a_subset() -> None:
    allowed = ["A", "B", "C"]
    assert resolve_scope(None, allowed) == allowed
    assert resolve_scope("  ", allowed) == allowed
    assert resolve_scope("C A A", allowed) == ["A", "C"]


def test_scope_outside_the_roles_is_invalid_scope() -> None:
    with pytest.raises(OAuthError) as raised:
        resolve_scope("A Z", ["A"])
    assert raised.value.error == "invalid_scope"
    assert "Z" in raised.value.description


def test_header_is_an_rs256_access_token(keys: SigningKeys) -> None:
    assert token_header("k1") == {"alg": "RS256", "kid": "k1", "typ": "at+jwt"}
    header = jwt.decode(sign_token(keys, claims()), keys.key_set).header
    assert header["typ"] == "at+jwt"
    assert header["kid"] == keys.kid


def test_signed_tokens_verify(keys: SigningKeys) -> None:
    verified = verify_token(keys, sign_token(keys, claims()), ISSUER, AUDIENCE)
    assert verified.tenant_id == "t1"
    assert verified.client_id == "c1"
    assert verified.roles == ["Alert.Read.All"]


@pytest.mark.parametrize(
    "bad",
    [
        {"iss": "https://elsewhere"},
        {"aud": "other-api"},
        {"exp": int(time.time()) - 3600},
        {"tid": None},
    ],
)
def test_wrong_claims_do_not_verify(keys: SigningKeys, bad: dict[str, object]) -> None:
    with pytest.raises(InvalidAccessTokenError):
        verify_token(keys, sign_token(keys, claims(**bad)), ISSUER, AUDIENCE)


def test_foreign_keys_and_plain_jwts_do_not_verify(keys: SigningKeys) -> None:
    stranger = SigningKeys(generate_key(), [generate_key()])
    with pytest.raises(InvalidAccessTokenError):
        verify_token(keys, sign_token(stranger, claims()), ISSUER, AUDIENCE)
    plain = jwt.encode({"alg": "RS256", "kid": keys.kid}, claims(), keys.active)
    with pytest.raises(InvalidAccessTokenError, match="typ"):
        verify_token(keys, plain, ISSUER, AUDIENCE)
    with pytest.raises(InvalidAccessTokenError):
        verify_token(keys, "not.a.jwt", ISSUER, AUDIENCE)


def test_jwks_holds_public_parts_only(keys: SigningKeys) -> None:
    [published] = keys.jwks()["keys"]
    assert published["kid"] == keys.kid
    assert {"n", "e"} <= set(published)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(published)


def test_keys_are_encrypted_at_rest_and_need_the_right_secret() -> None:
    key = generate_key()
    assert key.kid is not None
    sealed = seal_key(key, key_cipher("right"))
    assert b"PRIVATE KEY" not in sealed
    stored = StoredKey(key.kid, sealed, created_at=datetime.now(UTC), active=True)
    assert open_key(stored, key_cipher("right")).as_dict(private=True) == key.as_dict(private=True)
    with pytest.raises(KeyDecryptionError):
        open_key(stored, key_cipher("wrong"))
