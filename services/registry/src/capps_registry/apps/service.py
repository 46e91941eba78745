"""What the apps API does: validate against the catalog, store, and join usage stats.

Every change of an app writes an outbox entry in the same transaction, so the apps topic
hears of exactly the changes that were committed.
"""

from collections.abc import Iterable

import asyncpg

from capps_catalog import Catalog
from capps_registry.apps import repository
from capps_registry.apps.schemas import (
    AppCreate,
    AppCreated,
    AppDetail,
    AppOut,
    AppUpdate,
    DayRequests,
    RateLimit,
    SecretOut,
    external_identity,
)
from capps_registry.errors import ApiError
from capps_registry.models import Client
from capps_registry.oauth.credentials import looks_like_client_id, new_client_id, new_secret
from capps_registry.outbox import repository as outbox
from capps_registry.state import RegistryState
from capps_registry.usage.service import stats_of
from capps_usage.stats import AppStats


def checked_permissions(catalog: Catalog, names: Iterable[str]) -> list[str]:
    """The permissions, deduplicated and sorted; 400 naming any the catalog does not know."""
    wanted = sorted(set(names))
    unknown = [name for name in wanted if name not in catalog.permissions]
    if unknown:
        raise ApiError(
            400,
            "unknown_permission",
            "unknown permissions: "
            + ", ".join(unknown)
            + "; see GET /v1/permissions for the catalog",
        )
    return wanted


def app_view(client: Client, stats: AppStats | None) -> AppOut:
    """The JSON view of an app with its stats (zeros when it was never seen)."""
    return AppOut(
        id=client.id,
        name=client.name,
        description=client.description,
        enabled=client.enabled,
        permissions=sorted(client.permissions),
        rate_limit=RateLimit(per_minute=client.per_minute, per_hour=client.per_hour),
        created_at=client.created_at,
        updated_at=client.updated_at,
        last_seen=stats.last_seen if stats else None,
        requests_24h=stats.requests_24h if stats else 0,
        trend_30d=[DayRequests(date=day.date, requests=day.requests) for day in stats.trend_30d]
        if stats
        else [],
        external=external_identity(client),
    )


def _not_found(app_id: str) -> ApiError:
    # Echo the id only when it has the shape of one, so odd input is not reflected back.
    shown = app_id if looks_like_client_id(app_id) else "with this id"
    return ApiError(404, "not_found", f"no app {shown}")


async def create_app(state: RegistryState, tenant_id: str, body: AppCreate) -> AppCreated:
    """Store a new app and its first secret; the secret is returned this once."""
    permissions = checked_permissions(state.catalog, body.permissions)
    secret = new_secret()
    async with state.pool.acquire() as conn, conn.transaction():
        try:
            client = await repository.insert_client(
                conn,
                client_id=new_client_id(),
                tenant_id=tenant_id,
                kind="app",
                name=body.name,
                description=body.description,
                permissions=permissions,
                per_minute=body.rate_limit.per_minute,
                per_hour=body.rate_limit.per_hour,
            )
        except asyncpg.ForeignKeyViolationError:
            raise ApiError(404, "not_found", f"no tenant {tenant_id}") from None
        await repository.insert_secret(conn, client.id, secret)
        await outbox.enqueue(conn, client.id, "state", client.version)
    stats = await stats_of(state.redis, [client.id])
    view = app_view(client, stats.get(client.id))
    return AppCreated(**view.model_dump(), client_secret=secret.value)


async def list_apps(state: RegistryState, tenant_id: str) -> list[AppOut]:
    """Every app of the tenant with its stats, read in one pipelined call."""
    clients = await repository.list_apps(state.pool, tenant_id)
    stats = await stats_of(state.redis, [client.id for client in clients])
    return [app_view(client, stats.get(client.id)) for client in clients]


async def get_app(state: RegistryState, tenant_id: str, app_id: str) -> AppDetail:
    """One app with its stats and its secrets' metadata; 404 if not the tenant's."""
    if not looks_like_client_id(app_id):
        raise _not_found(app_id)
    client = await repository.get_app(state.pool, tenant_id, app_id)
    if client is None:
        raise _not_found(app_id)
    secrets = await repository.list_secrets(state.pool, client.id)
    stats = await stats_of(state.redis, [client.id])
    view = app_view(client, stats.get(client.id))
    return AppDetail(
        **view.model_dump(),
        secrets=[
            SecretOut(
                id=secret.id,
                created_at=secret.created_at,
                expires_at=secret.expires_at,
                last_used_at=secret.last_used_at,
                hint=secret.hint,
            )
            for secret in secrets
        ],
    )


async def update_app(
    state: RegistryState, tenant_id: str, app_id: str, body: AppUpdate
) -> AppDetail:
    """Reconfigure the fields given; 404 if not the tenant's app."""
    if not looks_like_client_id(app_id):
        raise _not_found(app_id)
    permissions = (
        checked_permissions(state.catalog, body.permissions)
        if body.permissions is not None
        else None
    )
    async with state.pool.acquire() as conn, conn.transaction():
        updated = await repository.update_app(
            conn,
            tenant_id,
            app_id,
            name=body.name,
            description=body.description,
            enabled=body.enabled,
            permissions=permissions,
            per_minute=body.rate_limit.per_minute if body.rate_limit else None,
            per_hour=body.rate_limit.per_hour if body.rate_limit else None,
        )
        if updated is not None:
            await outbox.enqueue(conn, app_id, "state", updated.version)
    if updated is None:
        raise _not_found(app_id)
    return await get_app(state, tenant_id, app_id)


async def delete_app(state: RegistryState, tenant_id: str, app_id: str) -> None:
    """Delete the app and its secrets, so its credentials stop working at once."""
    if not looks_like_client_id(app_id):
        raise _not_found(app_id)
    async with state.pool.acquire() as conn, conn.transaction():
        version = await repository.delete_app(conn, tenant_id, app_id)
        if version is not None:
            # The tombstone's version follows the last state, like any other change.
            await outbox.enqueue(conn, app_id, "deleted", version + 1)
    if version is None:
        raise _not_found(app_id)
