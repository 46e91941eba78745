"""Registering, reading and removing an app's public key set, audited like every change."""

from typing import Any

from capps_registry.app_keys import repository
from capps_registry.app_keys.schemas import JwksIn, JwksOut
from capps_registry.apps import repository as clients
from capps_registry.apps.service import lock_app
from capps_registry.audit import repository as audit
from capps_registry.db import Connection, tenant_transaction
from capps_registry.errors import ApiError, app_not_found
from capps_registry.models import Client, Principal
from capps_registry.oauth.client_keys import key_summary
from capps_registry.oauth.credentials import looks_like_client_id
from capps_registry.state import RegistryState


async def _lock_app(conn: Connection, actor: Principal, app_id: str) -> Client:
    """The tenant's app of this registry, locked for this transaction; 404 or 409 otherwise."""
    client = await lock_app(conn, actor, app_id)
    if client.issuer is not None:
        raise ApiError(
            409,
            "external_app",
            f"this app signs in at its identity provider ({client.issuer}); it has no keys here",
        )
    return client


def _audited(keys: list[dict[str, Any]]) -> dict[str, Any] | None:
    return {"jwks": key_summary(keys)} if keys else None


async def get_app_keys(state: RegistryState, actor: Principal, app_id: str) -> JwksOut:
    """The app's public keys; 404 if not the tenant's app."""
    if not looks_like_client_id(app_id):
        raise app_not_found(app_id)
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        if not await clients.get_app(conn, actor.tenant_id, app_id):
            raise app_not_found(app_id)
        return JwksOut(keys=await repository.app_keys(conn, app_id))


async def replace_app_keys(
    state: RegistryState, actor: Principal, app_id: str, body: JwksIn
) -> JwksOut:
    """Register the app's public keys in place of any it had; assertions use them at once."""
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        await _lock_app(conn, actor, app_id)
        before = await repository.app_keys(conn, app_id)
        await repository.replace_app_keys(conn, app_id, body.keys)
        await audit.record(
            conn,
            actor,
            "app.jwks.replace",
            app_id=app_id,
            before=_audited(before),
            after=_audited(body.keys),
        )
    return JwksOut(keys=body.keys)


async def delete_app_keys(state: RegistryState, actor: Principal, app_id: str) -> None:
    """Remove the app's keys: its assertions stop working at once (secrets, if any, do not)."""
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        await _lock_app(conn, actor, app_id)
        before = await repository.app_keys(conn, app_id)
        if not before:
            raise ApiError(404, "not_found", "this app has no registered keys")
        await repository.replace_app_keys(conn, app_id, None)
        await audit.record(
            conn, actor, "app.jwks.delete", app_id=app_id, before=_audited(before), after=None
        )
