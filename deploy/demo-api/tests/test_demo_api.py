"""The demo API answers every catalog route with plausible JSON, and errors as JSON."""

from typing import Any

import orjson
import pytest

from capps_catalog import load_catalog
from capps_demo_api import DemoApi


async def call(
    app: DemoApi,
    method: str,
    path: str,
    body: object = None,
    *,
    query: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[bytes, bytes], Any]:
    raw = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": headers or [],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, end = sent
    return start["status"], dict(start["headers"]), orjson.loads(end["body"])


@pytest.fixture
def app() -> DemoApi:
    return DemoApi()


SAMPLE_BODIES: dict[tuple[str, str], object] = {
    ("PATCH", "/api/alerts/{id}"): {"status": "Resolved"},
    ("POST", "/api/machines/{id}/isolate"): {"Comment": "contain it"},
    ("POST", "/api/advancedqueries/run"): {"Query": "DeviceProcessEvents | take 10"},
    ("POST", "/api/indicators"): {
        "indicatorValue": "1.2.3.4",
        "indicatorType": "IpAddress",
        "action": "Block",
        "title": "bad ip",
    },
}


async def test_every_catalog_route_answers(app: DemoApi) -> None:
    for route in load_catalog().routes:
        ident = "m-0001" if "machines" in route.template else "da-000001"
        path = route.template.replace("{id}", ident)
        status, _, payload = await call(
            app, route.method, path, SAMPLE_BODIES.get((route.method, route.template))
        )
        assert status in (200, 201), (route, payload)
        assert isinstance(payload, dict)


async def test_list_pages_with_top_and_skip(app: DemoApi) -> None:
    status, _, payload = await call(app, "GET", "/api/alerts", query="$top=3&$skip=1")
    assert status == 200
    assert [a["id"] for a in payload["value"]] == ["da-000002", "da-000003", "da-000004"]


async def test_bad_top_is_400(app: DemoApi) -> None:
    status, _, payload = await call(app, "GET", "/api/machines", query="$top=-1")
    assert status == 400
    assert payload["error"]["code"] == "invalid_query"


async def test_patch_is_visible_on_get_and_records_caller(app: DemoApi) -> None:
    headers = [(b"x-capps-app-id", b"app-1")]
    body = {"status": "InProgress", "assignedTo": "sec@contoso.com", "comment": "looking"}
    status, _, patched = await call(app, "PATCH", "/api/alerts/da-000002", body, headers=headers)
    assert status == 200
    assert patched["assignedTo"] == "sec@contoso.com"
    assert patched["comments"][0]["createdBy"] == "app-1"
    _, _, fetched = await call(app, "GET", "/api/alerts/da-000002")
    assert fetched["status"] == "InProgress"


async def test_isolate_returns_pending_action(app: DemoApi) -> None:
    status, _, action = await call(
        app, "POST", "/api/machines/m-0003/isolate", {"Comment": "x", "IsolationType": "Selective"}
    )
    assert status == 201
    assert action["status"] == "Pending"
    assert action["machineId"] == "m-0003"
    _, _, machine = await call(app, "GET", "/api/machines/m-0003")
    assert machine["isolated"] is True


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("PATCH", "/api/alerts/da-000001", b"{not json", "not valid JSON"),
        ("PATCH", "/api/alerts/da-000001", [1, 2], "must be a JSON object"),
        ("PATCH", "/api/alerts/da-000001", {"status": "Done"}, "'status' must be one of"),
        ("PATCH", "/api/alerts/da-000001", {"owner": "x"}, "unknown fields: owner"),
        ("POST", "/api/advancedqueries/run", {}, "field 'Query'"),
        ("POST", "/api/indicators", {"indicatorValue": "x"}, "field 'indicatorType'"),
        ("POST", "/api/machines/m-0001/isolate", None, "must be a JSON object"),
    ],
)
async def test_bad_bodies_are_400(
    app: DemoApi, method: str, path: str, body: object, expected: str
) -> None:
    status, _, payload = await call(app, method, path, body)
    assert status == 400
    assert expected in payload["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/alerts/nope"),
        ("GET", "/api/machines/nope"),
        ("GET", "/api/unknown"),
        ("DELETE", "/api/alerts/da-000001"),
        ("GET", "/api/machines/m-0001/isolate"),
        ("POST", "/api/machines/m-0001/other"),
        ("GET", "/"),
    ],
)
async def test_unknown_is_json_404_with_request_id(app: DemoApi, method: str, path: str) -> None:
    status, headers, payload = await call(
        app, method, path, headers=[(b"x-request-id", b"req-123")]
    )
    assert status == 404
    assert payload["error"]["code"] == "not_found"
    assert payload["error"]["target"] == "req-123"
    assert headers[b"x-request-id"] == b"req-123"


async def test_healthz(app: DemoApi) -> None:
    status, _, payload = await call(app, "GET", "/healthz")
    assert (status, payload) == (200, {"status": "ok"})
