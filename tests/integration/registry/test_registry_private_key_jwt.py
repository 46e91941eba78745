"""private_key_jwt (RFC 7523): apps that register public keys and sign their own assertions.

Keys are generated here, the public half registered through the admin API, and each
assertion signed the way a partner would, with joserfc.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, KeyParameters, KeySet, OKPKey, RSAKey

from capps_kit.postgres import asyncpg_dsn
from tests.integration.registry.conftest import ISSUER, Running, Tenant, new_tenant, token_for
from tests.integration.registry.test_registry_admin_api import assert_error
from tests.integration.registry.test_registry_hardening import unique_address

pytestmark = pytest.mark.integration

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_URL = f"{ISSUER}/oauth2/token"


def new_key(alg: str, kid: str = "k1") -> Key:
    """A fresh private key of the type `alg` needs."""
    parameters: KeyParameters = {"kid": kid}
    if alg in ("RS256", "PS256"):
        return RSAKey.generate_key(2048, parameters=parameters)
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=parameters)
    return OKPKey.generate_key("Ed25519", parameters=parameters)


def public_jwks(*keys: Key) -> dict[str, Any]:
    """The JWKS a partner registers: public halves only."""
    return {"keys": [key.as_dict(private=False) for key in keys]}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(client_id: str, *, lifetime: int = 60, **overrides: Any) -> dict[str, Any]:
    """The claims a partner puts in its assertion; `overrides` set or (with None) drop some."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + lifetime,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def sign(key: Key, claims: dict[str, Any], alg: str = "ES256", kid: str | None = None) -> str:
    """An assertion signed with `key`, its kid in the header."""
    header = {"alg": alg, "typ": "JWT", "kid": kid or key.kid}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # EdDSA's RFC 9864 deprecation
        return jwt.encode(header, claims, key, algorithms=[alg])


async def token_response(client: httpx.AsyncClient, assertion: str, **form: str) -> httpx.Response:
    return await client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            **form,
        },
    )


def refused(response: httpx.Response, words: str) -> None:
    """An RFC 6749 invalid_client answer whose description says `words`."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "invalid_client"
    assert words in body["error_description"], body
    assert response.headers["Cache-Control"] == "no-store"


async def keyed_app(admin: httpx.AsyncClient, key: Key, name: str = "Keyed") -> dict[str, Any]:
    """An app with a secret, then its public key registered through PUT …/jwks."""
    created = await admin.post("/v1/apps", json={"name": name, "permissions": ["Alert.Read.All"]})
    assert created.status_code == 201, created.text
    app: dict[str, Any] = created.json()
    put = await admin.put(f"/v1/apps/{app['id']}/jwks", json=public_jwks(key))
    assert put.status_code == 200, put.text
    return app


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
async def test_an_app_gets_a_token_with_an_assertion_signed_by_its_key(
    registry: Running, admin: httpx.AsyncClient, alg: str
) -> None:
    key = new_key(alg)
    created = await admin.post(
        "/v1/apps",
        json={"name": f"Signer {alg}", "permissions": ["Alert.Read.All"], "jwks": public_jwks(key)},
    )
    assert created.status_code == 201, created.text
    app = created.json()
    # Registered with keys instead of a secret: there is none to show.
    assert app["client_secret"] is None
    assert (await admin.get(f"/v1/apps/{app['id']}")).json()["secrets"] == []

    answer = await token_response(registry.client, sign(key, claims_for(app["id"]), alg))
    assert answer.status_code == 200, answer.text
    jwks = (await registry.client.get("/.well-known/jwks.json")).json()
    token = jwt.decode(answer.json()["access_token"], KeySet.import_key_set(jwks))
    assert token.claims["client_id"] == app["id"]
    assert token.claims["roles"] == ["Alert.Read.All"]
    assert answer.json()["scope"] == "Alert.Read.All"


async def test_the_issuer_is_an_accepted_audience_and_client_id_may_be_repeated(
    registry: Running, admin: httpx.AsyncClient, tenant: Tenant
) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    assertion = sign(key, claims_for(app["id"], aud=[ISSUER, "https://elsewhere.example"]))
    answer = await token_response(registry.client, assertion, client_id=app["id"])
    assert answer.status_code == 200, answer.text
    # The admin client introspects it like a secret-issued token.
    introspected = await registry.client.post(
        "/oauth2/introspect",
        data={"token": answer.json()["access_token"]},
        auth=(tenant.client_id, tenant.client_secret),
    )
    assert introspected.json()["active"] is True
    assert introspected.json()["client_id"] == app["id"]


async def test_a_replayed_jti_is_refused_until_the_assertion_expires(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    claims = claims_for(app["id"])
    first = await token_response(registry.client, sign(key, claims))
    assert first.status_code == 200, first.text
    # The very same assertion, and a fresh one that reuses its jti, are both refused.
    refused(await token_response(registry.client, sign(key, claims)), "jti was used before")
    reused = claims_for(app["id"], jti=claims["jti"])
    refused(await token_response(registry.client, sign(key, reused)), "jti was used before")
    # Another app may use the same jti: ids are the client's own.
    other_key = new_key("ES256")
    other = await keyed_app(admin, other_key, "Other")
    same_jti = claims_for(other["id"], jti=claims["jti"])
    assert (await token_response(registry.client, sign(other_key, same_jti))).status_code == 200


async def test_expired_jti_rows_are_cleaned_and_the_id_stored_until_expiry(
    registry: Running, admin: httpx.AsyncClient, tenant: Tenant
) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    async with registry.state.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO client_assertion_jtis (tenant_id, client_id, jti, expires_at) "
            "VALUES ($1, $2, 'long-gone', now() - interval '1 hour')",
            tenant.tenant_id,
            app["id"],
        )
    claims = claims_for(app["id"], lifetime=120)
    assert (await token_response(registry.client, sign(key, claims))).status_code == 200
    rows = await registry.state.pool.fetch(
        "SELECT jti, extract(epoch FROM expires_at) AS until FROM client_assertion_jtis "
        "WHERE client_id = $1",
        app["id"],
    )
    assert [row["jti"] for row in rows] == [claims["jti"]]
    # Kept at least until the assertion's exp (plus the leeway it was granted).
    assert float(rows[0]["until"]) >= claims["exp"]


async def test_wrong_audience_is_refused(registry: Running, admin: httpx.AsyncClient) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    assertion = sign(key, claims_for(app["id"], aud="https://other-server.example/token"))
    refused(await token_response(registry.client, assertion), "aud must be the token endpoint")


async def test_an_expired_assertion_is_refused(registry: Running, admin: httpx.AsyncClient) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    past = int(time.time()) - 600
    assertion = sign(key, claims_for(app["id"], iat=past, exp=past + 60))
    refused(await token_response(registry.client, assertion), "expired")


async def test_an_assertion_without_exp_is_refused(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    assertion = sign(key, claims_for(app["id"], exp=None))
    refused(await token_response(registry.client, assertion), "needs exp")


async def test_a_lifetime_over_five_minutes_is_refused(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    refused(
        await token_response(registry.client, sign(key, claims_for(app["id"], lifetime=3600))),
        "at most 300 s",
    )
    # A back-dated iat does not stretch it: exp is measured from now as well.
    now = int(time.time())
    backdated = claims_for(app["id"], iat=now - 250, exp=now + 400)
    refused(await token_response(registry.client, sign(key, backdated)), "at most 300 s")


async def test_an_assertion_not_valid_yet_is_refused(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    later = int(time.time()) + 120
    assertion = sign(key, claims_for(app["id"], nbf=later, exp=later + 60))
    refused(await token_response(registry.client, assertion), "not valid yet")


async def test_alg_none_is_refused(registry: Running, admin: httpx.AsyncClient) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    header = b64(json.dumps({"alg": "none", "kid": "k1"}).encode())
    payload = b64(json.dumps(claims_for(app["id"])).encode())
    refused(await token_response(registry.client, f"{header}.{payload}."), "alg none")


async def test_hs256_signed_with_the_public_key_is_refused(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    app = await keyed_app(admin, key)
    # The classic confusion attack: the registered public key used as an HMAC secret.
    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims_for(app["id"])).encode())
    for secret in (
        key.as_pem(private=False),
        json.dumps(key.as_dict(private=False)).encode(),
    ):
        mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        refused(
            await token_response(registry.client, f"{header}.{payload}.{b64(mac)}"),
            "symmetric algorithms (HS*) are refused",
        )


async def test_an_unknown_kid_is_refused(registry: Running, admin: httpx.AsyncClient) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    refused(
        await token_response(registry.client, sign(key, claims_for(app["id"]), kid="k2")),
        "no key registered for this app has kid 'k2'",
    )
    # A key of the partner's that was never registered, under the registered kid.
    stranger = new_key("ES256")
    refused(
        await token_response(registry.client, sign(stranger, claims_for(app["id"]))),
        "signature does not verify",
    )


async def test_iss_other_than_sub_is_refused(registry: Running, admin: httpx.AsyncClient) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    other = (await admin.post("/v1/apps", json={"name": "Other", "permissions": []})).json()
    assertion = sign(key, claims_for(app["id"], iss=other["id"]))
    refused(await token_response(registry.client, assertion), "iss and sub must both be")


async def test_an_app_with_no_keys_cannot_use_assertions(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Secret only", "permissions": []})).json()
    key = new_key("ES256")
    refused(
        await token_response(registry.client, sign(key, claims_for(app["id"]))),
        "client authentication failed",
    )
    # Removing the keys of a keyed app stops its assertions at once.
    keyed = await keyed_app(admin, key, "Was keyed")
    assert (await admin.delete(f"/v1/apps/{keyed['id']}/jwks")).status_code == 204
    refused(
        await token_response(registry.client, sign(key, claims_for(keyed["id"]))),
        "client authentication failed",
    )
    assert (await admin.get(f"/v1/apps/{keyed['id']}/jwks")).json() == {"keys": []}


async def test_a_secret_and_an_assertion_together_are_refused(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    both = await token_response(
        registry.client, sign(key, claims_for(app["id"])), client_secret=app["client_secret"]
    )
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"
    wrong_type = await registry.client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            "client_assertion": sign(key, claims_for(app["id"])),
        },
    )
    refused(wrong_type, "client_assertion_type must be")


async def test_failed_assertions_count_toward_the_client_throttle(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    limit = registry.state.settings.registry_auth_failures_per_client
    async with registry.new_client(address=unique_address()) as attacker:
        for _ in range(limit):
            stale = sign(key, claims_for(app["id"], aud="https://wrong.example"))
            assert (await token_response(attacker, stale)).status_code == 401
    async with registry.new_client(address=unique_address()) as owner:
        locked = await token_response(owner, sign(key, claims_for(app["id"])))
    assert locked.status_code == 429
    assert locked.json()["error"] == "invalid_client"
    assert 1 <= int(locked.headers["Retry-After"]) <= 60


async def test_a_disabled_app_is_refused(registry: Running, admin: httpx.AsyncClient) -> None:
    key = new_key("ES256")
    app = await keyed_app(admin, key)
    assert (await admin.patch(f"/v1/apps/{app['id']}", json={"enabled": False})).status_code == 200
    refused(await token_response(registry.client, sign(key, claims_for(app["id"]))), "disabled")


@pytest.mark.parametrize(
    ("jwks", "words"),
    [
        ("private", "private key material"),
        ({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}, "private key material"),
        ({"keys": []}, "at least 1"),
        ("six", "at most 5"),
        ("small_rsa", "2048 to 4096 bits"),
        ("no_kid", "kid is required"),
        ("hs_alg", "alg (if given) one of"),
        ("p384", "EC P-256"),
    ],
)
async def test_a_bad_key_set_is_refused_at_registration(
    admin: httpx.AsyncClient, jwks: Any, words: str
) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Strict", "permissions": []})).json()
    if jwks == "private":
        jwks = {"keys": [new_key("RS256").as_dict(private=True)]}
    elif jwks == "six":
        jwks = public_jwks(*(new_key("ES256", f"k{n}") for n in range(6)))
    elif jwks == "small_rsa":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # the very point of this case
            jwks = public_jwks(RSAKey.generate_key(1024, parameters={"kid": "k"}))
    elif jwks == "no_kid":
        jwks = {"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}
    elif jwks == "hs_alg":
        jwks = {"keys": [{**new_key("RS256").as_dict(private=False), "alg": "HS256"}]}
    elif jwks == "p384":
        jwks = public_jwks(ECKey.generate_key("P-384", parameters={"kid": "k"}))
    answer = await admin.put(f"/v1/apps/{app['id']}/jwks", json=jwks)
    error = assert_error(answer, 422, "validation_error")
    assert words in error["message"], error
    assert '"d"' not in answer.text
    assert (await admin.get(f"/v1/apps/{app['id']}/jwks")).json() == {"keys": []}
    # Nothing was changed, so nothing was audited.
    trail = (await admin.get("/v1/audit", params={"app_id": app["id"]})).json()["events"]
    assert [event["action"] for event in trail] == ["app.create"]


async def test_registering_keys_is_audited_with_thumbprints_and_replaces_the_set(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    first, second = new_key("ES256", "k1"), new_key("RS256", "k2")
    app = await keyed_app(admin, first)
    replaced = await admin.put(f"/v1/apps/{app['id']}/jwks", json=public_jwks(second))
    assert replaced.status_code == 200
    assert [key["kid"] for key in replaced.json()["keys"]] == ["k2"]
    # The replaced key no longer works; the new one does.
    refused(
        await token_response(registry.client, sign(first, claims_for(app["id"]))),
        "no key registered for this app has kid 'k1'",
    )
    assertion = sign(second, claims_for(app["id"]), "RS256")
    assert (await token_response(registry.client, assertion)).status_code == 200

    trail = (await admin.get("/v1/audit", params={"app_id": app["id"]})).json()["events"]
    assert [event["action"] for event in trail] == [
        "app.jwks.replace",
        "app.jwks.replace",
        "app.create",
    ]
    latest = trail[0]
    assert latest["before"]["jwks"] == [
        {"kid": "k1", "kty": "EC", "alg": None, "thumbprint": first.thumbprint()}
    ]
    assert latest["after"]["jwks"] == [
        {"kid": "k2", "kty": "RSA", "alg": None, "thumbprint": second.thumbprint()}
    ]
    assert trail[1]["before"] is None


async def test_another_tenants_app_keys_are_not_found(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    other_tenant = await new_tenant(registry)
    token = await token_for(registry, other_tenant.client_id, other_tenant.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as other_admin:
        theirs = (
            await other_admin.post("/v1/apps", json={"name": "Theirs", "permissions": []})
        ).json()
    jwks = public_jwks(new_key("ES256"))
    assert_error(await admin.put(f"/v1/apps/{theirs['id']}/jwks", json=jwks), 404, "not_found")
    assert_error(await admin.get(f"/v1/apps/{theirs['id']}/jwks"), 404, "not_found")
    assert_error(await admin.delete(f"/v1/apps/{theirs['id']}/jwks"), 404, "not_found")
    stored = await registry.state.pool.fetchval(
        "SELECT jwks FROM oauth_clients WHERE id = $1", theirs["id"]
    )
    assert stored is None


async def test_metadata_announces_private_key_jwt(registry: Running) -> None:
    metadata = (await registry.client.get("/.well-known/oauth-authorization-server")).json()
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert set(metadata["token_endpoint_auth_signing_alg_values_supported"]) == {
        "RS256",
        "PS256",
        "ES256",
        "EdDSA",
        "Ed25519",
    }
    assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]


async def test_no_private_key_reaches_the_database(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    key = new_key("RS256")
    app = await keyed_app(admin, key)
    conn = await asyncpg.connect(asyncpg_dsn(registry.state.settings.database_url))
    try:
        stored = json.loads(
            await conn.fetchval("SELECT jwks FROM oauth_clients WHERE id = $1", app["id"])
        )
    finally:
        await conn.close()
    assert stored == public_jwks(key)
    assert not {"d", "p", "q"} & stored["keys"][0].keys()
