"""Apps of external identity providers in the registry: registered by their client id, no secret.

They reach the apps topic with their issuer, so gateways accept their provider's tokens for
them, and the registry's own token endpoint never serves them.
"""

import uuid

import httpx
import pytest

from tests.integration.registry.conftest import Running, Tenant
from tests.integration.registry.test_registry_admin_api import assert_error
from tests.integration.registry.test_registry_outbox import TopicReader, reader

__all__ = ["reader"]  # the apps topic reader fixture, shared with the outbox tests

pytestmark = pytest.mark.integration

ISSUER = "https://login.example.com/tenant-a/v2.0"


def external_app(client_id: str, issuer: str = ISSUER + "/") -> dict[str, object]:
    return {
        "name": "Partner SIEM",
        "permissions": ["Alert.Read.All"],
        "rate_limit": {"per_minute": 10, "per_hour": 100},
        "external": {"issuer": issuer, "client_id": client_id},
    }


async def test_an_external_app_is_registered_by_its_client_id_without_a_secret(
    registry: Running, admin: httpx.AsyncClient, reader: TopicReader
) -> None:
    client_id = f"partner-siem-{uuid.uuid4().hex[:8]}"
    created = await admin.post("/v1/apps", json=external_app(client_id))
    assert created.status_code == 201, created.text
    app = created.json()
    assert app["id"] == client_id
    assert app["client_secret"] is None
    assert app["external"] == {"issuer": ISSUER, "client_id": client_id}
    assert created.headers["Location"] == f"/v1/apps/{client_id}"

    detail = (await admin.get(f"/v1/apps/{client_id}")).json()
    assert detail["secrets"] == []
    assert detail["external"] == {"issuer": ISSUER, "client_id": client_id}
    assert detail["rate_limit"] == {"per_minute": 10, "per_hour": 100}

    # Gateways learn the app with its issuer; a change keeps it.
    await reader.wait_for(reader.at_version(client_id, 1))
    [state] = reader.of(client_id)
    assert state is not None
    assert state.issuer == ISSUER
    assert state.permissions == ["Alert.Read.All"]
    patched = await admin.patch(f"/v1/apps/{client_id}", json={"enabled": False})
    assert patched.status_code == 200, patched.text
    await reader.wait_for(reader.at_version(client_id, 2))
    latest = reader.of(client_id)[-1]
    assert latest is not None
    assert (latest.enabled, latest.issuer) == (False, ISSUER)

    deleted = await admin.delete(f"/v1/apps/{client_id}")
    assert deleted.status_code == 204
    await reader.wait_for(lambda: reader.of(client_id)[-1] is None)


async def test_the_token_endpoint_never_serves_an_external_app(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    client_id = f"partner-{uuid.uuid4().hex[:8]}"
    assert (await admin.post("/v1/apps", json=external_app(client_id))).status_code == 201
    for secret in ("", "anything", "capps_" + "x" * 50):
        answer = await registry.client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret or "x"),
        )
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_client"
    # Nor can an admin give it a secret to get one.
    rotated = await admin.post(f"/v1/apps/{client_id}/secrets", json={})
    assert_error(rotated, 409, "external_app")


async def test_a_taken_client_id_is_a_conflict_even_across_tenants_and_issuers(
    registry: Running, admin: httpx.AsyncClient, tenant: Tenant
) -> None:
    client_id = f"partner-{uuid.uuid4().hex[:8]}"
    assert (await admin.post("/v1/apps", json=external_app(client_id))).status_code == 201
    again = await admin.post("/v1/apps", json=external_app(client_id, "https://other.example"))
    assert_error(again, 409, "conflict")
    # A registry-issued app id cannot be claimed by an external registration either.
    ours = await admin.post("/v1/apps", json={"name": "Ours", "permissions": []})
    taken = await admin.post("/v1/apps", json=external_app(ours.json()["id"]))
    assert_error(taken, 409, "conflict")


@pytest.mark.parametrize(
    "external",
    [
        {"issuer": "not a url", "client_id": "a"},
        {"issuer": "ftp://idp.example", "client_id": "a"},
        {"issuer": "https://idp.example?x=1", "client_id": "a"},
        {"issuer": ISSUER, "client_id": ""},
        {"issuer": ISSUER, "client_id": "../../v1/apps"},
        {"issuer": ISSUER, "client_id": "a b"},
        {"issuer": ISSUER, "client_id": "x" * 201},
        {"issuer": ISSUER},
        {"issuer": ISSUER, "client_id": "a", "secret": "x"},
    ],
)
async def test_bad_external_identities_are_refused_with_422(
    admin: httpx.AsyncClient, external: dict[str, str]
) -> None:
    body = {"name": "Bad", "permissions": [], "external": external}
    answer = await admin.post("/v1/apps", json=body)
    assert answer.status_code == 422, answer.text
    assert "external" in answer.text


async def test_unknown_permissions_are_refused_for_external_apps_too(
    admin: httpx.AsyncClient,
) -> None:
    body = {**external_app(f"p-{uuid.uuid4().hex[:8]}"), "permissions": ["Nope.All"]}
    assert_error(await admin.post("/v1/apps", json=body), 400, "unknown_permission")
