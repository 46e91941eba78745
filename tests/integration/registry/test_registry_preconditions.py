"""Two admins editing one app: If-Match makes the second change wait for a fresh read instead
of silently undoing the first (RFC 9110 conditional requests), on the real database."""

import httpx
import pytest

from tests.integration.registry.test_registry_admin_api import assert_error

pytestmark = pytest.mark.integration


async def _app(admin: httpx.AsyncClient) -> httpx.Response:
    created = await admin.post(
        "/v1/apps", json={"name": "Ticketing sync", "permissions": ["Alert.Read.All"]}
    )
    assert created.status_code == 201, created.text
    return created


async def test_every_read_and_change_tells_the_apps_etag(admin: httpx.AsyncClient) -> None:
    created = await _app(admin)
    app = created.json()
    assert created.headers["ETag"] == f'"{app["version"]}"'
    read = await admin.get(f"/v1/apps/{app['id']}")
    assert read.headers["ETag"] == created.headers["ETag"]
    patched = await admin.patch(
        f"/v1/apps/{app['id']}",
        json={"name": "Ticketing sync v2"},
        headers={"If-Match": read.headers["ETag"]},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] > app["version"]
    assert patched.headers["ETag"] == f'"{patched.json()["version"]}"'
    listed = (await admin.get("/v1/apps")).json()["apps"]
    assert [entry["version"] for entry in listed if entry["id"] == app["id"]] == [
        patched.json()["version"]
    ]


async def test_a_change_from_a_stale_read_is_refused_and_keeps_the_other_change(
    admin: httpx.AsyncClient,
) -> None:
    app = (await _app(admin)).json()
    seen_by_both = (await admin.get(f"/v1/apps/{app['id']}")).headers["ETag"]
    first = await admin.patch(
        f"/v1/apps/{app['id']}",
        json={"permissions": ["Alert.Read.All", "Machine.Read.All"]},
        headers={"If-Match": seen_by_both},
    )
    assert first.status_code == 200, first.text
    # The second admin still holds the first read and would drop Machine.Read.All.
    second = await admin.patch(
        f"/v1/apps/{app['id']}",
        json={"permissions": ["Alert.Read.All", "Ti.ReadWrite.All"]},
        headers={"If-Match": seen_by_both},
    )
    error = assert_error(second, 412, "precondition_failed")
    assert first.headers["ETag"] in error["message"]
    assert second.headers["ETag"] == first.headers["ETag"]
    now = (await admin.get(f"/v1/apps/{app['id']}")).json()
    assert now["permissions"] == ["Alert.Read.All", "Machine.Read.All"]
    assert now["version"] == first.json()["version"]
    # A weak tag of the current version does not match either: If-Match compares strongly.
    weak = await admin.patch(
        f"/v1/apps/{app['id']}",
        json={"enabled": False},
        headers={"If-Match": "W/" + first.headers["ETag"]},
    )
    assert_error(weak, 412, "precondition_failed")
    # `*` changes whatever version the app is at; no If-Match at all too.
    star = await admin.patch(
        f"/v1/apps/{app['id']}", json={"enabled": False}, headers={"If-Match": "*"}
    )
    assert star.status_code == 200, star.text
    assert star.json()["enabled"] is False


async def test_a_delete_from_a_stale_read_is_refused(admin: httpx.AsyncClient) -> None:
    app = (await _app(admin)).json()
    stale = f'"{app["version"]}"'
    changed = await admin.patch(f"/v1/apps/{app['id']}", json={"description": "now in use"})
    assert changed.status_code == 200, changed.text
    refused = await admin.delete(f"/v1/apps/{app['id']}", headers={"If-Match": stale})
    assert_error(refused, 412, "precondition_failed")
    assert (await admin.get(f"/v1/apps/{app['id']}")).status_code == 200
    deleted = await admin.delete(
        f"/v1/apps/{app['id']}", headers={"If-Match": changed.headers["ETag"]}
    )
    assert deleted.status_code == 204, deleted.text
    assert (await admin.get(f"/v1/apps/{app['id']}")).status_code == 404


async def test_a_malformed_if_match_is_a_400_and_changes_nothing(
    admin: httpx.AsyncClient,
) -> None:
    app = (await _app(admin)).json()
    bad = await admin.patch(
        f"/v1/apps/{app['id']}", json={"name": "Renamed"}, headers={"If-Match": "7"}
    )
    error = assert_error(bad, 400, "bad_precondition")
    assert "entity tags such as" in error["message"]
    assert (await admin.get(f"/v1/apps/{app['id']}")).json()["name"] == "Ticketing sync"
