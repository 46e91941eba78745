"""What the apps API does: validate against the catalog, store, and join usage stats.

Every change of an app writes an outbox entry and an audit event in the same transaction, so
the apps topic and the audit trail hear of exactly the changes that were committed.
Every function takes the registry state and the acting principal first.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from capps_catalog import Catalog
from capps_registry.app_keys import repository as app_keys
from capps_registry.apps import repository
from capps_registry.apps.preconditions import IfMatch, require_match
from capps_registry.apps.schemas import (
    DEFAULT_PAGE,
    AppCreate,
    AppCreated,
    AppDetail,
    AppOut,
    AppSort,
    AppUpdate,
    DayRequests,
    RateLimit,
    SecretOut,
    external_identity,
)
from capps_registry.audit import repository as audit
from capps_registry.db import Connection, tenant_transaction
from capps_registry.errors import ApiError, app_not_found
from capps_registry.models import Client, Principal, SecretInfo, secrets_expire_at
from capps_registry.oauth.client_keys import key_summary
from capps_registry.oauth.credentials import looks_like_client_id, new_client_id, new_secret
from capps_registry.outbox import repository as outbox
from capps_registry.pagination import BadCursorError, decode_cursor, encode_cursor
from capps_registry.state import RegistryState
from capps_registry.usage.service import last_seen_ms, stats_of
from capps_registry.usage.sort_snapshot import sorted_requests_24h
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


def app_view(client: Client, stats: AppStats | None, secrets_end: datetime | None = None) -> AppOut:
    """The JSON view of an app with its stats (zeros when it was never seen)."""
    return AppOut(
        id=client.id,
        name=client.name,
        description=client.description,
        enabled=client.enabled,
        version=client.version,
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
        secrets_expire_at=secrets_end,
    )


def app_row(
    client: Client, stats: AppStats | None, secrets_end: datetime | None = None
) -> dict[str, Any]:
    """The JSON of `app_view` as plain data, without a model per row and per day.

    A list page holds up to 200 apps of 30 days each: building and re-validating 6,000
    models was most of its cost. test_schemas checks that both give the same JSON.
    """
    external = external_identity(client)
    return {
        "id": client.id,
        "name": client.name,
        "description": client.description,
        "enabled": client.enabled,
        "version": client.version,
        "permissions": sorted(client.permissions),
        "rate_limit": {"per_minute": client.per_minute, "per_hour": client.per_hour},
        "created_at": client.created_at,
        "updated_at": client.updated_at,
        "last_seen": stats.last_seen if stats else None,
        "requests_24h": stats.requests_24h if stats else 0,
        "trend_30d": [{"date": day.date, "requests": day.requests} for day in stats.trend_30d]
        if stats
        else [],
        "external": external.model_dump() if external else None,
        "secrets_expire_at": secrets_end,
    }


def app_snapshot(client: Client) -> dict[str, Any]:
    """What the audit trail records of an app's configuration (never a secret)."""
    return {
        "name": client.name,
        "description": client.description,
        "enabled": client.enabled,
        "version": client.version,
        "permissions": sorted(client.permissions),
        "rate_limit": {"per_minute": client.per_minute, "per_hour": client.per_hour},
    }


def secret_view(secret: SecretInfo) -> SecretOut:
    """The JSON view of a secret's metadata."""
    return SecretOut(
        id=secret.id,
        created_at=secret.created_at,
        expires_at=secret.expires_at,
        last_used_at=secret.last_used_at,
        hint=secret.hint,
    )


async def lock_app(conn: Connection, actor: Principal, app_id: str) -> Client:
    """The tenant's app, locked for this transaction; 404 otherwise."""
    if not looks_like_client_id(app_id):
        raise app_not_found(app_id)
    client = await repository.lock_client(conn, actor.tenant_id, app_id)
    if client is None:
        raise app_not_found(app_id)
    return client


async def create_app(state: RegistryState, actor: Principal, body: AppCreate) -> AppCreated:
    """Store a new app and its first secret; the secret is returned this once."""
    permissions = checked_permissions(state.catalog, body.permissions)
    # An app that registers public keys authenticates with signed assertions: no secret.
    secret = None if body.jwks else new_secret(state.settings.pepper)
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        try:
            client = await repository.insert_client(
                conn,
                client_id=new_client_id(),
                tenant_id=actor.tenant_id,
                kind="app",
                name=body.name,
                description=body.description,
                permissions=permissions,
                per_minute=body.rate_limit.per_minute,
                per_hour=body.rate_limit.per_hour,
            )
        except asyncpg.ForeignKeyViolationError:
            raise ApiError(404, "not_found", f"no tenant {actor.tenant_id}") from None
        after = app_snapshot(client)
        if secret is not None:
            stored = await repository.insert_secret(conn, client.id, secret)
            after["secret"] = {"id": stored.id, "hint": stored.hint}
        if body.jwks is not None:
            await app_keys.replace_app_keys(conn, client.id, body.jwks.keys)
            after["jwks"] = key_summary(body.jwks.keys)
        await outbox.enqueue(conn, client.id, "state", client.version)
        await audit.record(conn, actor, "app.create", app_id=client.id, before=None, after=after)
    stats = await stats_of(state, [client.id])
    view = app_view(client, stats.get(client.id))
    return AppCreated(**view.model_dump(), client_secret=secret.value if secret else None)


def _cursor_key(sort: AppSort, cursor: str | None) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        key = decode_cursor(sort, cursor)
    except BadCursorError as exc:
        raise ApiError(400, "bad_cursor", str(exc)) from None
    valid = (
        len(key) == 2
        and isinstance(key[1], str)
        and (isinstance(key[0], str) if sort == "name" else isinstance(key[0], int))
    )
    if not valid:
        raise ApiError(400, "bad_cursor", "cursor is malformed")
    return key


async def list_apps(
    state: RegistryState,
    actor: Principal,
    *,
    sort: AppSort = "name",
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> dict[str, Any]:
    """One page of the tenant's apps with their stats, as the JSON of `AppList`.

    By name: keyset pagination in SQL, stats for the page only (one Redis script call). By
    last seen or requests (largest first): every app's sort key first (one MGET, or the
    tenant's sort snapshot: see usage/sort_snapshot.py), then the page's stats.
    Pagination is by key, so apps whose stats change between pages may move across pages.
    """
    key = _cursor_key(sort, cursor)
    if sort == "name":
        after = (str(key[0]), str(key[1])) if key else None
        async with tenant_transaction(state.pool, actor.tenant_id) as conn:
            found = await repository.apps_by_name(conn, actor.tenant_id, after, limit + 1)
            page, more = found[:limit], len(found) > limit
            ends = await repository.secrets_ends(
                conn, actor.tenant_id, [client.id for client in page]
            )
        stats = await stats_of(state, [client.id for client in page])
        last_key: list[Any] = [page[-1].name, page[-1].id] if page else []
    else:
        ids = await repository.app_ids(state.pool, actor.tenant_id)
        if sort == "requests":
            values = await sorted_requests_24h(state, actor.tenant_id, ids)
        else:
            values = await last_seen_ms(state, ids)
        ordered = sorted(ids, key=lambda app_id: (-values.get(app_id, -1), app_id))
        if key is not None:
            resume = (-int(key[0]), str(key[1]))
            ordered = [app_id for app_id in ordered if (-values.get(app_id, -1), app_id) > resume]
        page_ids, more = ordered[:limit], len(ordered) > limit
        async with tenant_transaction(state.pool, actor.tenant_id) as conn:
            clients = await repository.apps_by_id(conn, actor.tenant_id, page_ids)
            ends = await repository.secrets_ends(conn, actor.tenant_id, page_ids)
        page = [clients[app_id] for app_id in page_ids if app_id in clients]
        stats = await stats_of(state, [client.id for client in page])
        last_key = [values.get(page[-1].id, -1), page[-1].id] if page else []
    return {
        "apps": [app_row(client, stats.get(client.id), ends.get(client.id)) for client in page],
        "next_cursor": encode_cursor(sort, last_key) if more and page else None,
    }


async def get_app(state: RegistryState, actor: Principal, app_id: str) -> AppDetail:
    """One app with its stats and its secrets' metadata; 404 if not the tenant's."""
    if not looks_like_client_id(app_id):
        raise app_not_found(app_id)
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        client = await repository.get_app(conn, actor.tenant_id, app_id)
        secrets = await repository.list_secrets(conn, client.id) if client else []
    if client is None:
        raise app_not_found(app_id)
    stats = await stats_of(state, [client.id])
    end = secrets_expire_at(secret.expires_at for secret in secrets)
    view = app_view(client, stats.get(client.id), end)
    return AppDetail(**view.model_dump(), secrets=[secret_view(secret) for secret in secrets])


async def update_app(
    state: RegistryState,
    actor: Principal,
    app_id: str,
    body: AppUpdate,
    if_match: IfMatch | None = None,
) -> AppDetail:
    """Reconfigure the fields given; 404 if not the tenant's app, 412 if not at `if_match`.

    A rate-limit change names per_minute, per_hour or both; the other keeps its value.
    """
    if not looks_like_client_id(app_id):
        raise app_not_found(app_id)
    permissions = (
        checked_permissions(state.catalog, body.permissions)
        if body.permissions is not None
        else None
    )
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        before = await repository.lock_client(conn, actor.tenant_id, app_id)
        if before is None:
            raise app_not_found(app_id)
        require_match(before, if_match)
        limit = body.rate_limit
        per_minute = limit.per_minute if limit and limit.per_minute else before.per_minute
        per_hour = limit.per_hour if limit and limit.per_hour else before.per_hour
        if per_hour < per_minute:
            raise ApiError(
                422,
                "validation_error",
                f"rate_limit: per_hour ({per_hour}) must be at least per_minute ({per_minute})",
            )
        updated = await repository.update_app(
            conn,
            actor.tenant_id,
            app_id,
            name=body.name,
            description=body.description,
            enabled=body.enabled,
            permissions=permissions,
            per_minute=per_minute,
            per_hour=per_hour,
        )
        assert updated is not None  # locked above
        await outbox.enqueue(conn, app_id, "state", updated.version)
        await audit.record(
            conn,
            actor,
            "app.update",
            app_id=app_id,
            before=app_snapshot(before),
            after=app_snapshot(updated),
        )
    return await get_app(state, actor, app_id)


async def delete_app(
    state: RegistryState, actor: Principal, app_id: str, if_match: IfMatch | None = None
) -> None:
    """Delete the app and its secrets, so its credentials stop working at once."""
    if not looks_like_client_id(app_id):
        raise app_not_found(app_id)
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        before = await repository.lock_client(conn, actor.tenant_id, app_id)
        if before is None:
            raise app_not_found(app_id)
        require_match(before, if_match)
        version = await repository.delete_app(conn, actor.tenant_id, app_id)
        assert version is not None  # locked above
        # The tombstone's version follows the last state, like any other change.
        await outbox.enqueue(conn, app_id, "deleted", version + 1)
        await audit.record(
            conn, actor, "app.delete", app_id=app_id, before=app_snapshot(before), after=None
        )
