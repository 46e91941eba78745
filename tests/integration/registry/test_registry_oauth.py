"""OAuth 2.0 against the real database: tokens for admin and app clients, and RFC 6749 errors."""

import base64
import time
import uuid
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from capps_kit.settings import API_AUDIENCE
from capps_registry.db import tenant_transaction
from capps_registry.oauth.credentials import secret_digest
from tests.integration.registry.conftest import (
    ISSUER,
    TEST_PEPPER,
    Running,
    Tenant,
    new_tenant,
    tenant_of,
    token_for,
)

pytestmark = pytest.mark.integration


def basic(client_id: str, secret: str) -> str:
    """client_secret_basic per RFC 6749 §2.3.1 (form-urlencode, then Basic)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


async def verified_claims(registry: Running, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of `token`, verified with the published JWKS only."""
    jwks = (await registry.client.get("/.well-known/jwks.json")).json()
    assert all("d" not in key and "p" not in key for key in jwks["keys"])
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    return decoded.header, decoded.claims


async def create_app(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await admin.post("/v1/apps", json={"name": "SIEM", "permissions": [], **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_admin_token_carries_tenant_admin_role(registry: Running, tenant: Tenant) -> None:
    response = await registry.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(tenant.client_id, tenant.client_secret)},
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "Tenant.Admin"
    header, claims = await verified_claims(registry, body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] == registry.state.keys.kid
    assert claims["iss"] == ISSUER
    assert claims["aud"] == API_AUDIENCE
    assert claims["sub"] == claims["client_id"] == tenant.client_id
    assert claims["tid"] == tenant.tenant_id
    assert claims["roles"] == ["Tenant.Admin"]
    assert 3599 < claims["exp"] - claims["iat"] <= 3600  # iat has milliseconds, exp whole seconds
    assert abs(claims["iat"] - time.time()) < 30
    assert claims["jti"]


async def test_app_token_by_basic_and_post_carries_permissions(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    app = await create_app(admin, permissions=["Machine.Read.All", "Alert.Read.All"])
    by_basic = await registry.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(app["id"], app["client_secret"])},
    )
    assert by_basic.status_code == 200, by_basic.text
    by_post = await token_for(registry, app["id"], app["client_secret"])
    for token in (by_basic.json()["access_token"], by_post):
        header, claims = await verified_claims(registry, token)
        assert header["typ"] == "at+jwt"
        assert claims["client_id"] == claims["sub"] == app["id"]
        assert claims["tid"] == tenant.tenant_id
        assert claims["roles"] == ["Alert.Read.All", "Machine.Read.All"]
    assert by_basic.json()["scope"] == "Alert.Read.All Machine.Read.All"

    narrowed = await token_for(registry, app["id"], app["client_secret"], scope="Alert.Read.All")
    _, claims = await verified_claims(registry, narrowed)
    assert claims["roles"] == ["Alert.Read.All"]

    detail = (await admin.get(f"/v1/apps/{app['id']}")).json()
    assert detail["secrets"][0]["last_used_at"] is not None


async def test_secret_with_reserved_characters_survives_basic_encoding(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    # Our secrets are base62, but RFC 6749 §2.3.1 encoding must hold for any: store one full
    # of reserved characters; '+' must not turn into a space, nor ':' split the pair.
    app = await create_app(admin)
    odd = "pa+ss:wo%rd/ &=?"
    async with tenant_transaction(
        registry.state.pool, await tenant_of(registry, app["id"])
    ) as conn:
        await conn.execute(
            "INSERT INTO client_secrets (id, client_id, secret_hash, hint) "
            "VALUES ($1, $2, $3, 'odd')",
            str(uuid.uuid4()),
            app["id"],
            secret_digest(TEST_PEPPER.encode(), odd),
        )
    encoded = await registry.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(app["id"], odd)},
    )
    assert encoded.status_code == 200, encoded.text
    raw = "Basic " + base64.b64encode(f"{app['id']}:{odd}".encode()).decode()
    unencoded = await registry.client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers={"Authorization": raw}
    )
    assert unencoded.status_code == 401
    assert unencoded.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({}, 400, "invalid_request"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "scope": "Alert.Read.All"}, 400, "invalid_scope"),
    ],
)
async def test_token_request_errors(
    registry: Running, tenant: Tenant, form: dict[str, str], status: int, error: str
) -> None:
    response = await registry.client.post(
        "/oauth2/token",
        data=form,
        headers={"Authorization": basic(tenant.client_id, tenant.client_secret)},
    )
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic !!!not-base64",
        "Bearer abc",
        basic("no-such-client", "wrong"),
    ],
)
async def test_client_authentication_failures_answer_401(
    registry: Running, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await registry.client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


async def test_wrong_secret_and_two_auth_methods(registry: Running, tenant: Tenant) -> None:
    wrong = await registry.client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": tenant.client_id,
            "client_secret": "wrong",
        },
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    both = await registry.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_secret": tenant.client_secret},
        headers={"Authorization": basic(tenant.client_id, tenant.client_secret)},
    )
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"


async def test_json_body_and_repeated_parameters_are_invalid_requests(
    registry: Running, tenant: Tenant
) -> None:
    auth = {"Authorization": basic(tenant.client_id, tenant.client_secret)}
    as_json = await registry.client.post(
        "/oauth2/token", json={"grant_type": "client_credentials"}, headers=auth
    )
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    repeated = await registry.client.post(
        "/oauth2/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status_code == 400
    assert repeated.json()["error"] == "invalid_request"


async def test_disabled_and_deleted_apps_get_no_token(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = await create_app(admin)
    disabled = await admin.patch(f"/v1/apps/{app['id']}", json={"enabled": False})
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    refused = await registry.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(app["id"], app["client_secret"])},
    )
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"

    await admin.patch(f"/v1/apps/{app['id']}", json={"enabled": True})
    assert await token_for(registry, app["id"], app["client_secret"])
    assert (await admin.delete(f"/v1/apps/{app['id']}")).status_code == 204
    gone = await registry.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(app["id"], app["client_secret"])},
    )
    assert gone.status_code == 401


async def test_metadata_documents(registry: Running) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        body = (await registry.client.get(path)).json()
        assert body["issuer"] == ISSUER
        assert body["token_endpoint"] == f"{ISSUER}/oauth2/token"
        assert body["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
        assert body["introspection_endpoint"] == f"{ISSUER}/oauth2/introspect"
        assert body["grant_types_supported"] == ["client_credentials"]
        assert set(body["token_endpoint_auth_methods_supported"]) == {
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        }
    jwks = (await registry.client.get("/.well-known/jwks.json")).json()
    # The signing key, and any retired one whose tokens may still be alive (key rotation).
    assert registry.state.keys.kid in [key["kid"] for key in jwks["keys"]]
    assert {key["kty"] for key in jwks["keys"]} == {"RSA"}


async def test_introspection_is_limited_to_the_tenant_admin(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    app = await create_app(admin, permissions=["Alert.Read.All"])
    app_token = await token_for(registry, app["id"], app["client_secret"])
    admin_auth = {"Authorization": basic(tenant.client_id, tenant.client_secret)}

    seen = await registry.client.post(
        "/oauth2/introspect", data={"token": app_token}, headers=admin_auth
    )
    assert seen.status_code == 200, seen.text
    assert seen.json()["active"] is True
    assert seen.json()["client_id"] == app["id"]
    assert seen.json()["scope"] == "Alert.Read.All"

    by_app = await registry.client.post(
        "/oauth2/introspect",
        data={"token": app_token},
        headers={"Authorization": basic(app["id"], app["client_secret"])},
    )
    assert by_app.json() == {"active": False}

    other = await registry.client.post(
        "/oauth2/introspect", data={"token": "garbage"}, headers=admin_auth
    )
    assert other.json() == {"active": False}

    await admin.delete(f"/v1/apps/{app['id']}")
    after_delete = await registry.client.post(
        "/oauth2/introspect", data={"token": app_token}, headers=admin_auth
    )
    assert after_delete.json() == {"active": False}

    anonymous = await registry.client.post("/oauth2/introspect", data={"token": app_token})
    assert anonymous.status_code == 401


async def test_signing_key_is_created_once_under_concurrent_starts(registry: Running) -> None:
    import asyncio

    from capps_registry.oauth.service import load_signing_keys

    state = registry.state
    loaded = await asyncio.gather(
        *(
            load_signing_keys(state.pool, state.settings.registry_key_encryption_key)
            for _ in range(4)
        )
    )
    assert {keys.kid for keys in loaded} == {state.keys.kid}


async def test_introspection_by_another_tenants_admin_or_without_a_token_reveals_nothing(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    app = await create_app(admin, permissions=["Alert.Read.All"])
    app_token = await token_for(registry, app["id"], app["client_secret"])
    other = await new_tenant(registry)
    other_admin = {"Authorization": basic(other.client_id, other.client_secret)}

    # A valid, live token of tenant A, asked about by tenant B's admin: inactive, nothing else.
    foreign = await registry.client.post(
        "/oauth2/introspect", data={"token": app_token}, headers=other_admin
    )
    assert foreign.status_code == 200
    assert foreign.json() == {"active": False}
    # Its own admin still sees it active: the refusal above is about the tenant, not the token.
    own = await registry.client.post(
        "/oauth2/introspect",
        data={"token": app_token},
        headers={"Authorization": basic(tenant.client_id, tenant.client_secret)},
    )
    assert own.json()["active"] is True

    missing = await registry.client.post("/oauth2/introspect", data={}, headers=other_admin)
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "urn:x:unknown"])
async def test_the_client_is_authenticated_before_its_grant_type_is_judged(
    registry: Running, tenant: Tenant, grant_type: str
) -> None:
    form = {"grant_type": grant_type}
    wrong = await registry.client.post(
        "/oauth2/token",
        data=form,
        headers={"Authorization": basic(tenant.client_id, "not-the-secret")},
    )
    # A caller who cannot authenticate learns nothing about which grants exist (RFC 6749 §5.2).
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    right = await registry.client.post(
        "/oauth2/token",
        data=form,
        headers={"Authorization": basic(tenant.client_id, tenant.client_secret)},
    )
    assert right.status_code == 400
    assert right.json()["error"] == "unsupported_grant_type"
