"""The API permission catalog, loaded from `config/catalog.yaml` (or `CATALOG_PATH`)."""

from capps_catalog.catalog import (
    TENANT_ADMIN_ROLE,
    Catalog,
    CatalogError,
    Permission,
    Route,
    load_catalog,
)

__all__ = ["TENANT_ADMIN_ROLE", "Catalog", "CatalogError", "Permission", "Route", "load_catalog"]
