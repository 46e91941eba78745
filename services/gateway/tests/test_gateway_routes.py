"""Route matching: catalog templates compiled into method + raw path -> route and params."""

import pytest

from capps_catalog import Route, load_catalog
from capps_gateway.routes import RouteTable, path_refusal


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return RouteTable(load_catalog().routes)


@pytest.mark.parametrize(
    ("method", "path", "template", "permission", "params"),
    [
        ("GET", "/api/alerts", "/api/alerts", "Alert.Read.All", ()),
        ("GET", "/api/alerts/da-1", "/api/alerts/{id}", "Alert.Read.All", ("da-1",)),
        ("PATCH", "/api/alerts/da-1", "/api/alerts/{id}", "Alert.ReadWrite.All", ("da-1",)),
        ("GET", "/api/machines/m%2F1", "/api/machines/{id}", "Machine.Read.All", ("m%2F1",)),
        (
            "POST",
            "/api/machines/m-1/isolate",
            "/api/machines/{id}/isolate",
            "Machine.Isolate",
            ("m-1",),
        ),
        (
            "POST",
            "/api/advancedqueries/run",
            "/api/advancedqueries/run",
            "AdvancedQuery.Read.All",
            (),
        ),
        ("POST", "/api/indicators", "/api/indicators", "Ti.ReadWrite.All", ()),
    ],
)
def test_catalog_routes_match(
    table: RouteTable,
    *,
    method: str,
    path: str,
    template: str,
    permission: str,
    params: tuple[str, ...],
) -> None:
    found = table.match(method, path)
    assert found is not None
    assert (found.route.template, found.route.permission, found.params) == (
        template,
        permission,
        params,
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/alerts/x"),
        ("GET", "/api/alerts/"),
        ("GET", "/api/alerts/x/y"),
        ("GET", "/api/alert"),
        ("GET", "/api//alerts"),
        ("GET", "/API/alerts"),
        ("GET", "/"),
        ("GET", ""),
        ("GET", "*"),
        ("POST", "/api/machines/m-1/isolate/"),
        ("POST", "/api/machines//isolate"),
        ("GET", "/api/alerts/.."),
        ("GET", "/api/alerts/%2e%2E"),
        ("POST", "/api/machines/./isolate"),
    ],
)
def test_anything_else_is_unmatched(table: RouteTable, method: str, path: str) -> None:
    assert table.match(method, path) is None


def test_first_literal_wins_over_parameter() -> None:
    table = RouteTable(
        [
            Route("GET", "/a/{id}", "P.Param"),
            Route("GET", "/a/{id}/b", "P.Deep"),
            Route("GET", "/a/fixed", "P.Fixed"),
        ]
    )
    fixed = table.match("GET", "/a/fixed")
    param = table.match("GET", "/a/other")
    deep = table.match("GET", "/a/x/b")
    assert fixed is not None
    assert fixed.route.permission == "P.Fixed"
    assert param is not None
    assert param.route.permission == "P.Param"
    assert deep is not None
    assert deep.params == ("x",)


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("/api/machines/abc", False),
        ("/api/machines/a%20b", False),
        ("/api/machines/x%2F..%2F..%2Falerts", True),
        ("/api/machines/x%2f..", True),
        ("/api/machines/x%5Cy", True),
        ("/api/machines/x\\y", True),
        ("/api/machines/x%00", True),
    ],
)
def test_encoded_slashes_backslashes_and_nul_are_refused(path: str, refused: bool) -> None:
    assert (path_refusal(path) is not None) is refused
