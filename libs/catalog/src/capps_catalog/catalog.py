"""Parse and validate the permission catalog file; the registry and the gateway both read it."""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path("config/catalog.yaml")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# The role of a tenant's admin client: never a permission an app can be granted.
TENANT_ADMIN_ROLE = "Tenant.Admin"
_TEMPLATE = re.compile(r"^(/([A-Za-z0-9._-]+|\{[a-z_]+\}))+$")


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Route:
    """One upstream route and the permission it needs."""

    method: str
    template: str
    permission: str


@dataclass(frozen=True, slots=True)
class Permission:
    """One grantable permission."""

    name: str
    description: str
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every permission, keyed by name, and every route."""

    permissions: dict[str, Permission]

    @property
    def routes(self) -> list[Route]:
        """All routes of all permissions."""
        return [route for permission in self.permissions.values() for route in permission.routes]


def parse_catalog(document: Any) -> Catalog:
    """Validate a parsed YAML document into a Catalog."""
    if not isinstance(document, dict) or not isinstance(document.get("permissions"), dict):
        raise CatalogError("catalog must be a mapping with a 'permissions' mapping")
    permissions: dict[str, Permission] = {}
    seen: dict[tuple[str, str], str] = {}
    for name, entry in document["permissions"].items():
        if str(name).casefold() == TENANT_ADMIN_ROLE.casefold():
            raise CatalogError(
                f"{name!r} is reserved for tenant admins, not a grantable permission"
            )
        if not isinstance(entry, dict) or not isinstance(entry.get("routes"), list):
            raise CatalogError(f"permission {name!r} needs a 'routes' list")
        routes = []
        for spec in entry["routes"]:
            method, _, template = str(spec).partition(" ")
            if method not in METHODS or not _TEMPLATE.match(template):
                raise CatalogError(f"permission {name!r}: bad route {spec!r}")
            if (method, template) in seen:
                raise CatalogError(f"route {spec!r} is listed under {seen[method, template]!r} too")
            seen[method, template] = name
            routes.append(Route(method, template, name))
        permissions[name] = Permission(name, str(entry.get("description", "")), tuple(routes))
    return Catalog(permissions)


def load_catalog(path: Path | None = None) -> Catalog:
    """Load the catalog from `path`, else `CATALOG_PATH`, else `config/catalog.yaml`."""
    chosen = path or Path(os.environ.get("CATALOG_PATH", DEFAULT_PATH))
    try:
        document = yaml.safe_load(chosen.read_text())
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {chosen}: {exc.strerror}") from None
    return parse_catalog(document)
