"""The audit trail: every admin change recorded with who, what, when, before and after."""

import json
import uuid

import httpx
import pytest

from tests.integration.registry.conftest import Running, Tenant, new_tenant, token_for
from tests.integration.registry.test_registry_admin_api import assert_error

pytestmark = pytest.mark.integration


async def test_every_change_of_an_app_is_recorded(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    created = await admin.post("/v1/apps", json={"name": "Audited", "permissions": []})
    app = created.json()
    patched = await admin.patch(
        f"/v1/apps/{app['id']}",
        json={
            "enabled": False,
            "permissions": ["Alert.Read.All"],
            "rate_limit": {"per_hour": 3000},
        },
    )
    secret = (await admin.post(f"/v1/apps/{app['id']}/secrets")).json()
    await admin.delete(f"/v1/apps/{app['id']}/secrets/{secret['id']}")
    await admin.delete(f"/v1/apps/{app['id']}")

    page = await admin.get("/v1/audit", params={"app_id": app["id"]})
    assert page.status_code == 200, page.text
    events = page.json()["events"]
    assert [event["action"] for event in events] == [
        "app.delete",
        "app.secret.delete",
        "app.secret.create",
        "app.update",
        "app.create",
    ]
    assert {event["actor"] for event in events} == {tenant.client_id}
    assert {event["via"] for event in events} == {"api"}
    assert {event["app_id"] for event in events} == {app["id"]}
    create, update = events[4], events[3]
    assert create["before"] is None
    assert create["after"]["name"] == "Audited"
    assert create["request_id"] == created.headers["X-Request-Id"]
    assert update["request_id"] == patched.headers["X-Request-Id"]
    assert update["before"]["enabled"] is True
    assert update["after"]["enabled"] is False
    assert update["before"]["permissions"] == []
    assert update["after"]["permissions"] == ["Alert.Read.All"]
    assert update["after"]["rate_limit"] == {"per_minute": 100, "per_hour": 3000}
    assert events[2]["after"]["secret"]["hint"] == secret["hint"]
    assert events[0]["after"] is None
    # Never a secret, and the deleted app's trail outlives it.
    text = json.dumps(events)
    assert app["client_secret"] not in text
    assert secret["client_secret"] not in text


async def test_a_refused_change_records_nothing(admin: httpx.AsyncClient) -> None:
    app = (await admin.post("/v1/apps", json={"name": "Full", "permissions": []})).json()
    await admin.post(f"/v1/apps/{app['id']}/secrets")
    assert (await admin.post(f"/v1/apps/{app['id']}/secrets")).status_code == 409
    bad = await admin.patch(f"/v1/apps/{app['id']}", json={"rate_limit": {"per_hour": 1}})
    assert_error(bad, 422)
    actions = [
        event["action"]
        for event in (await admin.get("/v1/audit", params={"app_id": app["id"]})).json()["events"]
    ]
    assert actions == ["app.secret.create", "app.create"]


async def test_the_trail_pages_by_cursor(registry: Running) -> None:
    tenant = await new_tenant(registry)
    token = await token_for(registry, tenant.client_id, tenant.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as admin:
        for number in range(5):
            await admin.post("/v1/apps", json={"name": f"App {number}", "permissions": []})
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await admin.get("/v1/audit", params=params)).json()
            seen += [event["id"] for event in page["events"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        # Five creations and the tenant's own creation, newest first, each once.
        assert len(seen) == 6
        assert seen == sorted(seen, reverse=True)
        assert pages == 3
        assert_error(await admin.get("/v1/audit", params={"cursor": "garbage!"}), 400, "bad_cursor")
        apps_cursor = "WyJuYW1lIixbIngiLCJ5Il1d"  # a cursor of the apps list, not the trail
        assert_error(await admin.get("/v1/audit", params={"cursor": apps_cursor}), 400)
        for limit in (0, 201, "x"):
            assert_error(await admin.get("/v1/audit", params={"limit": limit}), 422)


async def test_another_tenants_trail_is_not_found(
    registry: Running, admin: httpx.AsyncClient
) -> None:
    mine = (await admin.post("/v1/apps", json={"name": "Private", "permissions": []})).json()
    stranger = await new_tenant(registry)
    token = await token_for(registry, stranger.client_id, stranger.client_secret)
    async with registry.new_client(Authorization=f"Bearer {token}") as other:
        assert_error(await other.get("/v1/audit", params={"app_id": mine["id"]}), 404)
        assert_error(await other.get("/v1/audit", params={"app_id": str(uuid.uuid4())}), 404)
        everything = (await other.get("/v1/audit")).json()["events"]
        assert [event["action"] for event in everything] == ["tenant.create"]
    partner_token = await token_for(registry, mine["id"], mine["client_secret"])
    async with registry.new_client(Authorization=f"Bearer {partner_token}") as partner:
        assert_error(await partner.get("/v1/audit"), 403)
