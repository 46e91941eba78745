"""SQL of the apps API; every query is scoped to the caller's tenant, in SQL and by RLS.

Queries splice in only the constant CLIENT_COLUMNS (hence the S608 waivers); values are
always bound parameters.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from capps_registry.db import CLIENT_COLUMNS, Connection, Pool, tenant_scope
from capps_registry.models import Client, SecretInfo, secrets_expire_at
from capps_registry.oauth.credentials import NewSecret


async def insert_client(
    conn: Connection,
    *,
    client_id: str,
    tenant_id: str,
    kind: str,
    name: str,
    description: str,
    permissions: list[str],
    per_minute: int,
    per_hour: int,
) -> Client:
    """Store a new client and return it as stored."""
    row = await conn.fetchrow(
        "INSERT INTO oauth_clients (id, tenant_id, kind, name, description, permissions, "  # noqa: S608
        "rate_limit_per_minute, rate_limit_per_hour) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        f"RETURNING {CLIENT_COLUMNS}",
        client_id,
        tenant_id,
        kind,
        name,
        description,
        permissions,
        per_minute,
        per_hour,
    )
    return Client.from_row(row)


async def insert_secret(
    conn: Connection, client_id: str, secret: NewSecret, expires_at: datetime | None = None
) -> SecretInfo:
    """Store a secret's digest and hint (never the secret); its metadata as stored."""
    row = await conn.fetchrow(
        "INSERT INTO client_secrets (id, client_id, secret_hash, hint, expires_at) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at, expires_at, last_used_at, hint",
        secret.id,
        client_id,
        secret.hash,
        secret.hint,
        expires_at,
    )
    return _secret_info(row)


async def apps_by_name(
    db: Pool | Connection, tenant_id: str, after: tuple[str, str] | None, limit: int
) -> list[Client]:
    """Up to `limit` of the tenant's apps ordered by (name, id), after the given key."""
    async with tenant_scope(db, tenant_id) as conn:
        rows = await conn.fetch(
            f"SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE tenant_id = $1 AND kind = 'app' "  # noqa: S608
            "AND ($2::text IS NULL OR (name, id) > ($2::text, $3::text)) "
            "ORDER BY name, id LIMIT $4",
            tenant_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    return [Client.from_row(row) for row in rows]


async def app_ids(db: Pool | Connection, tenant_id: str) -> list[str]:
    """The ids of all the tenant's apps."""
    async with tenant_scope(db, tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT id FROM oauth_clients WHERE tenant_id = $1 AND kind = 'app'", tenant_id
        )
    return [row["id"] for row in rows]


async def apps_by_id(
    db: Pool | Connection, tenant_id: str, ids: Sequence[str]
) -> dict[str, Client]:
    """The tenant's apps among `ids`, by id."""
    async with tenant_scope(db, tenant_id) as conn:
        rows = await conn.fetch(
            f"SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE tenant_id = $1 AND kind = 'app' "  # noqa: S608
            "AND id = ANY($2::text[])",
            tenant_id,
            list(ids),
        )
    return {row["id"]: Client.from_row(row) for row in rows}


async def lock_client(
    conn: Connection, tenant_id: str, client_id: str, kind: str = "app"
) -> Client | None:
    """The tenant's client of this kind, locked until the transaction ends; None if not there."""
    row = await conn.fetchrow(
        f"SELECT {CLIENT_COLUMNS} FROM oauth_clients "  # noqa: S608
        "WHERE id = $1 AND tenant_id = $2 AND kind = $3 FOR UPDATE",
        client_id,
        tenant_id,
        kind,
    )
    return Client.from_row(row) if row else None


async def admin_client_id(db: Connection | Pool, tenant_id: str) -> str | None:
    """The id of the tenant's admin client."""
    async with tenant_scope(db, tenant_id) as conn:
        found: str | None = await conn.fetchval(
            "SELECT id FROM oauth_clients WHERE tenant_id = $1 AND kind = 'admin' "
            "ORDER BY created_at LIMIT 1",
            tenant_id,
        )
    return found


async def get_app(db: Connection | Pool, tenant_id: str, app_id: str) -> Client | None:
    """One app of the tenant, or None (also for another tenant's app)."""
    async with tenant_scope(db, tenant_id) as conn:
        row = await conn.fetchrow(
            f"SELECT {CLIENT_COLUMNS} FROM oauth_clients "  # noqa: S608
            "WHERE id = $1 AND tenant_id = $2 AND kind = 'app'",
            app_id,
            tenant_id,
        )
    return Client.from_row(row) if row else None


def _secret_info(row: Any) -> SecretInfo:
    return SecretInfo(
        row["id"], row["created_at"], row["expires_at"], row["last_used_at"], row["hint"]
    )


async def list_secrets(conn: Connection, client_id: str) -> list[SecretInfo]:
    """The metadata of a client's secrets, oldest first (in a transaction acting for its tenant)."""
    rows = await conn.fetch(
        "SELECT id, created_at, expires_at, last_used_at, hint FROM client_secrets "
        "WHERE client_id = $1 ORDER BY created_at, id",
        client_id,
    )
    return [_secret_info(row) for row in rows]


async def secrets_ends(
    db: Pool | Connection, tenant_id: str, client_ids: Sequence[str]
) -> dict[str, datetime]:
    """When the last secret of each of these clients stops working (models.secrets_expire_at),
    for those whose secrets all expire; a client absent from the answer has no end."""
    async with tenant_scope(db, tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT client_id, expires_at FROM client_secrets WHERE client_id = ANY($1::text[])",
            list(client_ids),
        )
    expiries: dict[str, list[datetime | None]] = {}
    for row in rows:
        expiries.setdefault(row["client_id"], []).append(row["expires_at"])
    ends = {client_id: secrets_expire_at(each) for client_id, each in expiries.items()}
    return {client_id: end for client_id, end in ends.items() if end is not None}


async def count_active_secrets(conn: Connection, client_id: str) -> int:
    """How many of the client's secrets have not expired."""
    count = await conn.fetchval(
        "SELECT count(*) FROM client_secrets "
        "WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > now())",
        client_id,
    )
    return int(count)


async def delete_secret(conn: Connection, client_id: str, secret_id: str) -> SecretInfo | None:
    """Delete one of the client's secrets; its metadata, or None if it has no such secret."""
    row = await conn.fetchrow(
        "DELETE FROM client_secrets WHERE id = $1 AND client_id = $2 "
        "RETURNING id, created_at, expires_at, last_used_at, hint",
        secret_id,
        client_id,
    )
    return _secret_info(row) if row else None


async def revoke_tokens(conn: Connection, client_id: str) -> Client:
    """Refuse every token the client holds now: tokens_valid_after moves to this moment."""
    row = await conn.fetchrow(
        "UPDATE oauth_clients SET tokens_valid_after = $2, updated_at = now(), "  # noqa: S608
        f"version = version + 1 WHERE id = $1 RETURNING {CLIENT_COLUMNS}",
        client_id,
        datetime.now(UTC),
    )
    return Client.from_row(row)


async def update_app(
    conn: Connection,
    tenant_id: str,
    app_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    permissions: list[str] | None = None,
    per_minute: int | None = None,
    per_hour: int | None = None,
) -> Client | None:
    """Change the given fields (None keeps one) and bump the version; None if no such app.

    Disabling an enabled app moves tokens_valid_after to now, so tokens issued before stay
    refused even after the app is enabled again. The registry's clock, which stamps `iat`
    (in milliseconds), sets the cut-off too, so the two compare exactly.
    """
    row = await conn.fetchrow(
        "UPDATE oauth_clients SET name = COALESCE($3::text, name), "  # noqa: S608
        "description = COALESCE($4::text, description), "
        "enabled = COALESCE($5::boolean, enabled), "
        "permissions = COALESCE($6::text[], permissions), "
        "rate_limit_per_minute = COALESCE($7::bigint, rate_limit_per_minute), "
        "rate_limit_per_hour = COALESCE($8::bigint, rate_limit_per_hour), "
        "tokens_valid_after = CASE WHEN $5::boolean IS FALSE AND enabled "
        "THEN $9::timestamptz "
        "ELSE tokens_valid_after END, "
        "updated_at = now(), version = version + 1 "
        f"WHERE id = $1 AND tenant_id = $2 AND kind = 'app' RETURNING {CLIENT_COLUMNS}",
        app_id,
        tenant_id,
        name,
        description,
        enabled,
        permissions,
        per_minute,
        per_hour,
        datetime.now(UTC),
    )
    return Client.from_row(row) if row else None


async def delete_app(conn: Connection, tenant_id: str, app_id: str) -> int | None:
    """Delete the app and (by cascade) its secrets; its last version, or None if not there."""
    version: int | None = await conn.fetchval(
        "DELETE FROM oauth_clients WHERE id = $1 AND tenant_id = $2 AND kind = 'app' "
        "RETURNING version",
        app_id,
        tenant_id,
    )
    return version
