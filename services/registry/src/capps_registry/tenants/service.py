"""Tenant bootstrap: a tenant and its admin client, whose secret is shown once."""

import re
import uuid
from dataclasses import dataclass

from capps_registry.apps import repository as clients
from capps_registry.db import Pool
from capps_registry.models import DEFAULT_PER_HOUR, DEFAULT_PER_MINUTE
from capps_registry.oauth.credentials import new_client_id, new_secret
from capps_registry.tenants import repository

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


class InvalidTenantNameError(ValueError):
    """The tenant name is empty, too long or has characters outside the allowed set."""


@dataclass(frozen=True, slots=True)
class BootstrappedTenant:
    """A new tenant and the credentials of its admin client."""

    tenant_id: str
    client_id: str
    client_secret: str


def checked_tenant_name(name: str) -> str:
    """The name, trimmed, if it is 1-100 letters, digits, spaces, dots, dashes or underscores."""
    trimmed = name.strip()
    if not _NAME.match(trimmed):
        raise InvalidTenantNameError(
            "tenant name must be 1-100 characters: letters, digits, space, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return trimmed


async def create_tenant(pool: Pool, name: str) -> BootstrappedTenant:
    """Create the tenant and its admin client in one transaction."""
    tenant_name = checked_tenant_name(name)
    tenant_id = str(uuid.uuid4())
    secret = new_secret()
    async with pool.acquire() as conn, conn.transaction():
        await repository.insert_tenant(conn, tenant_id, tenant_name)
        client = await clients.insert_client(
            conn,
            client_id=new_client_id(),
            tenant_id=tenant_id,
            kind="admin",
            name=f"{tenant_name} admin",
            description="The tenant's admin client",
            permissions=[],
            per_minute=DEFAULT_PER_MINUTE,
            per_hour=DEFAULT_PER_HOUR,
        )
        await clients.insert_secret(conn, client.id, secret)
    return BootstrappedTenant(tenant_id, client.id, secret.value)
