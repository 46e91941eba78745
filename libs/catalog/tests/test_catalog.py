"""The shipped catalog loads, and malformed catalogs are refused with the entry named."""

from pathlib import Path

import pytest

from capps_catalog import CatalogError, load_catalog
from capps_catalog.catalog import parse_catalog

SHIPPED = Path(__file__).resolve().parents[3] / "config" / "catalog.yaml"


def test_shipped_catalog_has_the_six_permissions_of_the_design() -> None:
    catalog = load_catalog(SHIPPED)
    assert set(catalog.permissions) == {
        "Alert.Read.All",
        "Alert.ReadWrite.All",
        "Machine.Read.All",
        "Machine.Isolate",
        "AdvancedQuery.Read.All",
        "Ti.ReadWrite.All",
    }
    routes = {(route.method, route.template): route.permission for route in catalog.routes}
    assert routes["POST", "/api/machines/{id}/isolate"] == "Machine.Isolate"
    assert len(routes) == 8


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "mapping"),
        ({"permissions": {"P": {}}}, "'P' needs a 'routes' list"),
        ({"permissions": {"P": {"routes": ["FETCH /x"]}}}, "bad route"),
        ({"permissions": {"P": {"routes": ["GET x"]}}}, "bad route"),
        ({"permissions": {"P": {"routes": ["GET /x"]}, "Q": {"routes": ["GET /x"]}}}, "too"),
        ({"permissions": {"Tenant.Admin": {"routes": ["GET /x"]}}}, "reserved"),
        ({"permissions": {"tenant.admin": {"routes": ["GET /x"]}}}, "reserved"),
    ],
)
def test_malformed_catalogs_are_refused(document: object, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog(document)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"nope\.yaml"):
        load_catalog(tmp_path / "nope.yaml")
