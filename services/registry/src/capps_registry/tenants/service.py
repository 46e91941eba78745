"""Tenant bootstrap: a tenant and its admin client, whose secret is shown once."""

import re
import uuid
from dataclasses import dataclass

from capps_registry.apps import repository as clients
from capps_registry.audit import repository as audit
from capps_registry.db import Pool, tenant_transaction
from capps_registry.models import DEFAULT_PER_HOUR, DEFAULT_PER_MINUTE, Principal
from capps_registry.oauth.credentials import new_client_id, new_secret
from capps_registry.tenants import repository

# The actor the audit trail names for what the `registry` command does.
CLI_ACTOR = "registry-cli"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


class InvalidTenantNameError(ValueError):
    """The tenant name is empty, too long or has characters outside the allowed set."""


class UnknownTenantError(LookupError):
    """No tenant (or no admin client) with this id."""


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


async def create_tenant(pool: Pool, pepper: bytes, name: str) -> BootstrappedTenant:
    """Create the tenant and its admin client in one transaction."""
    tenant_name = checked_tenant_name(name)
    tenant_id = str(uuid.uuid4())
    secret = new_secret(pepper)
    async with tenant_transaction(pool, tenant_id) as conn:
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
        stored = await clients.insert_secret(conn, client.id, secret)
        await audit.record(
            conn,
            Principal(tenant_id, CLI_ACTOR, via="cli"),
            "tenant.create",
            app_id=None,
            before=None,
            after={"name": tenant_name, "admin_client_id": client.id, "secret_hint": stored.hint},
        )
    return BootstrappedTenant(tenant_id, client.id, secret.value)


async def rotate_admin_secret(pool: Pool, pepper: bytes, tenant_id: str) -> BootstrappedTenant:
    """Break glass: a new admin secret, every other one deleted, every admin token revoked."""
    secret = new_secret(pepper)
    async with tenant_transaction(pool, tenant_id) as conn:
        client_id = await clients.admin_client_id(conn, tenant_id)
        client = await clients.lock_client(conn, tenant_id, client_id or "", "admin")
        if client is None:
            raise UnknownTenantError(f"no tenant {tenant_id}")
        old = await clients.list_secrets(conn, client.id)
        for each in old:
            await clients.delete_secret(conn, client.id, each.id)
        stored = await clients.insert_secret(conn, client.id, secret)
        await clients.revoke_tokens(conn, client.id)
        await audit.record(
            conn,
            Principal(tenant_id, CLI_ACTOR, via="cli"),
            "admin.secret.rotate",
            app_id=None,
            before={"secrets": [{"id": each.id, "hint": each.hint} for each in old]},
            after={"secret": {"id": stored.id, "hint": stored.hint}, "tokens_revoked": True},
        )
    return BootstrappedTenant(tenant_id, client.id, secret.value)
