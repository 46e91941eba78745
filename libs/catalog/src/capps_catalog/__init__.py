"""The API permission catalog, loaded from `config/catalog.yaml` (or `CATALOG_PATH`)."""

from capps_catalog.catalog import Catalog, CatalogError, Permission, Route, load_catalog

__all__ = ["Catalog", "CatalogError", "Permission", "Route", "load_catalog"]
