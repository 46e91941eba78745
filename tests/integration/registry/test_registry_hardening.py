"""The authorization server under attack: limits before work, throttled guessing, roles."""

import uuid
from typing import Any

import httpx
import pytest

from capps_registry.oauth import throttle
from tests.integration.registry.conftest import Running, Tenant, token_for
from tests.integration.registry.test_registry_admin_api import assert_error

pytestmark = pytest.mark.integration


def unique_address() -> str:
    """A source address no other test uses (TEST-NET-3 with a random host part)."""
    host = uuid.uuid4().int
    return f"203.0.{host % 250 + 1}.{(host >> 8) % 250 + 1}"


async def test_failed_authentication_is_limited_per_client_id(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Guessed", "permissions": []})).json()
    limit = registry.state.settings.registry_auth_failures_per_client
    async with registry.new_client(address=unique_address()) as attacker:
        for _ in range(limit):
            wrong = await attacker.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(app["id"], "capps_wrong"),
            )
            assert wrong.status_code == 401
    # From another address too, and even with the right secret, the id is locked this window.
    async with registry.new_client(address=unique_address()) as owner:
        locked = await owner.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(app["id"], app["client_secret"]),
        )
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    assert locked.json()["error"] == "invalid_client"
    # Another client id is not affected.
    other = (await admin.post("/v1/apps", json={"name": "Fine", "permissions": []})).json()
    assert await token_for(registry, other["id"], other["client_secret"])


async def test_a_locked_out_client_id_stays_locked_when_its_failures_age_out(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Patient", "permissions": []})).json()
    limit = registry.state.settings.registry_auth_failures_per_client
    async with registry.new_client(address=unique_address()) as attacker:
        for _ in range(limit):
            await attacker.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(app["id"], "capps_wrong"),
            )
        first = await attacker.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(app["id"], app["client_secret"]),
        )
        assert first.status_code == 429
        # The failures leave the log as a new minute would; the lockout runs its full minute.
        await registry.state.redis.delete(*throttle.failure_keys(app["id"], "unused"))
        again = await attacker.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(app["id"], app["client_secret"]),
        )
    assert again.status_code == 429
    assert 1 <= int(again.headers["Retry-After"]) <= 60


async def test_failed_authentication_is_limited_per_address(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Sprayed", "permissions": []})).json()
    limit = registry.state.settings.registry_auth_failures_per_address
    address = unique_address()
    async with registry.new_client(address=address) as sprayer:
        for _ in range(limit):
            # A different (unknown) client id each time: only the address limit can catch it.
            await sprayer.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(str(uuid.uuid4()), "capps_wrong"),
            )
        refused = await sprayer.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(app["id"], app["client_secret"]),
        )
        assert refused.status_code == 429
        assert "Retry-After" in refused.headers
    async with registry.new_client(address=unique_address()) as elsewhere:
        fine = await elsewhere.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(app["id"], app["client_secret"]),
        )
        assert fine.status_code == 200


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect"])
async def test_oversized_forms_are_refused_before_reading(registry: Running, path: str) -> None:
    big = "x" * (registry.state.settings.registry_form_max_bytes + 1)
    response = await registry.client.post(
        path,
        content=f"grant_type=client_credentials&pad={big}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 413, "payload_too_large")


async def test_a_streamed_body_is_cut_off_at_the_limit(registry: Running) -> None:
    limit = registry.state.settings.registry_json_max_bytes

    async def chunks() -> Any:
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024

    response = await registry.client.post(
        "/v1/apps", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_too_many_form_fields_are_refused(registry: Running) -> None:
    form = "&".join(f"f{n}=1" for n in range(40))
    response = await registry.client.post(
        "/oauth2/token",
        content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert "fields" in response.json()["error_description"]


async def test_oversized_admin_json_is_refused(admin: httpx.AsyncClient, registry: Running) -> None:
    size = registry.state.settings.registry_json_max_bytes
    body = {"name": "x", "permissions": [], "description": "d" * size}
    assert_error(await admin.post("/v1/apps", json=body), 413, "payload_too_large")


async def test_patch_rate_limit_changes_only_the_part_given(admin: httpx.AsyncClient) -> None:
    app = (
        await admin.post(
            "/v1/apps",
            json={"name": "Limited", "permissions": [], "rate_limit": {"per_minute": 7}},
        )
    ).json()
    hour = await admin.patch(f"/v1/apps/{app['id']}", json={"rate_limit": {"per_hour": 5000}})
    assert hour.json()["rate_limit"] == {"per_minute": 7, "per_hour": 5000}
    minute = await admin.patch(f"/v1/apps/{app['id']}", json={"rate_limit": {"per_minute": 9}})
    assert minute.json()["rate_limit"] == {"per_minute": 9, "per_hour": 5000}
    # Merged with the stored value, an hour below the minute is refused, and nothing changes.
    below = await admin.patch(f"/v1/apps/{app['id']}", json={"rate_limit": {"per_hour": 8}})
    assert "per_hour (8)" in assert_error(below, 422)["message"]
    for bad in ({}, {"per_hour": None}, {"per_day": 5}, {"per_hour": 0}):
        assert_error(await admin.patch(f"/v1/apps/{app['id']}", json={"rate_limit": bad}), 422)
    final = (await admin.get(f"/v1/apps/{app['id']}")).json()
    assert final["rate_limit"] == {"per_minute": 9, "per_hour": 5000}


@pytest.mark.parametrize(
    "name",
    ["evil\u202etxt.exe", "a\u2066b", "left\u200fmark", "c1\u0085control", "tab\there"],
)
async def test_names_refuse_control_and_bidi_characters(
    admin: httpx.AsyncClient, name: str
) -> None:
    error = assert_error(await admin.post("/v1/apps", json={"name": name, "permissions": []}), 422)
    assert "name" in error["message"]
    app = (await admin.post("/v1/apps", json={"name": "Fine", "permissions": []})).json()
    assert_error(await admin.patch(f"/v1/apps/{app['id']}", json={"name": name}), 422)
    described = await admin.post(
        "/v1/apps", json={"name": "ok", "description": "x\u202ey", "permissions": []}
    )
    assert_error(described, 422)


async def test_introspection_reports_current_permissions_only(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    app = (
        await admin.post(
            "/v1/apps",
            json={"name": "Narrowed", "permissions": ["Alert.Read.All", "Ti.ReadWrite.All"]},
        )
    ).json()
    token = await token_for(registry, app["id"], app["client_secret"])

    async def introspect() -> dict[str, Any]:
        response = await registry.client.post(
            "/oauth2/introspect",
            data={"token": token},
            auth=(tenant.client_id, tenant.client_secret),
        )
        body: dict[str, Any] = response.json()
        return body

    assert (await introspect())["roles"] == ["Alert.Read.All", "Ti.ReadWrite.All"]
    await admin.patch(
        f"/v1/apps/{app['id']}", json={"permissions": ["Alert.Read.All", "Machine.Isolate"]}
    )
    now = await introspect()
    assert now["active"] is True
    # Revoked since issuance: gone. Granted since: not in this token.
    assert now["roles"] == ["Alert.Read.All"]
    assert now["scope"] == "Alert.Read.All"


async def test_tenant_admin_cannot_be_granted_to_an_app(admin: httpx.AsyncClient) -> None:
    refused = await admin.post("/v1/apps", json={"name": "Sneaky", "permissions": ["Tenant.Admin"]})
    assert "Tenant.Admin" in assert_error(refused, 400, "unknown_permission")["message"]
