"""SQL of the OAuth side: client lookup with its usable secrets, secret use, signing keys.

Queries splice in only the constant CLIENT_COLUMNS (hence the S608 waiver); values are
always bound parameters.
"""

import json
from datetime import datetime
from typing import Any

from capps_registry.db import (
    CLIENT_COLUMNS,
    TENANT_SETTING,
    Connection,
    Pool,
    tenant_scope,
    tenant_transaction,
)
from capps_registry.models import Client
from capps_registry.oauth.credentials import StoredSecret
from capps_registry.oauth.keys import StoredKey

# One constant lock id: concurrent registry starts serialise key creation on it.
SIGNING_KEY_LOCK_ID = 0x63617070_73_6B6579


async def find_client(db: Pool | Connection, tenant_id: str, client_id: str) -> Client | None:
    """The tenant's client with this id, or None (also for another tenant's client)."""
    async with tenant_scope(db, tenant_id) as conn:
        row = await conn.fetchrow(
            f"SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1",  # noqa: S608
            client_id,
        )
    return Client.from_row(row) if row else None


async def _act_for_tenant_of(conn: Connection, client_id: str) -> None:
    """Make the transaction act for the client's tenant; for an unknown id, for none."""
    await conn.execute(
        "SELECT set_config($1, t.tenant_id, true) FROM registry_client_tenants(ARRAY[$2::text]) t",
        TENANT_SETTING,
        client_id,
    )


async def find_client_and_secrets(
    pool: Pool, client_id: str
) -> tuple[Client | None, list[StoredSecret]]:
    """The client with this id, of whichever tenant, and its unexpired secrets.

    The client's tenant comes first (the caller names only a client id), then the transaction
    acts for that tenant to read the client and its secrets in one query. An unknown id runs
    both queries too (the second, acting for no tenant, finds nothing): one cost either way.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _act_for_tenant_of(conn, client_id)
        rows = await conn.fetch(
            "SELECT c.*, s.id AS secret_id, s.secret_hash "  # noqa: S608
            f"FROM (SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1) c "
            "LEFT JOIN client_secrets s ON s.client_id = c.id "
            "AND (s.expires_at IS NULL OR s.expires_at > now())",
            client_id,
        )
    if not rows:
        return None, []
    stored = [
        StoredSecret(row["secret_id"], bytes(row["secret_hash"]))
        for row in rows
        if row["secret_id"] is not None
    ]
    return Client.from_row(rows[0]), stored


async def find_client_and_keys(
    pool: Pool, client_id: str
) -> tuple[Client | None, list[dict[str, Any]] | None]:
    """The client with this id, of whichever tenant, and its registered public keys.

    Its tenant first, as `find_client_and_secrets` does; None for keys if it has none.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _act_for_tenant_of(conn, client_id)
        row = await conn.fetchrow(
            f"SELECT {CLIENT_COLUMNS}, jwks FROM oauth_clients WHERE id = $1",  # noqa: S608
            client_id,
        )
    if row is None:
        return None, None
    jwks = json.loads(row["jwks"]) if row["jwks"] is not None else None
    return Client.from_row(row), jwks["keys"] if jwks else None


async def use_assertion_id(pool: Pool, client: Client, jti: str, keep_until: datetime) -> bool:
    """Record an assertion's jti; False if it is already recorded and not yet expired.

    The primary key makes the check atomic across registries. A few of the tenant's expired
    ids are deleted at each use (never the one being recorded), so the table holds about the
    live ones.
    """
    async with tenant_transaction(pool, client.tenant_id) as conn:
        recorded = await conn.fetchval(
            "WITH expired AS (DELETE FROM client_assertion_jtis WHERE ctid IN ("
            "SELECT ctid FROM client_assertion_jtis WHERE expires_at < now() "
            "AND NOT (client_id = $2 AND jti = $3) "
            "ORDER BY expires_at LIMIT 100 FOR UPDATE SKIP LOCKED)) "
            "INSERT INTO client_assertion_jtis (tenant_id, client_id, jti, expires_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (client_id, jti) DO UPDATE "
            "SET expires_at = EXCLUDED.expires_at WHERE client_assertion_jtis.expires_at < now() "
            "RETURNING true",
            client.tenant_id,
            client.id,
            jti,
            keep_until,
        )
    return recorded is True


async def touch_secret(pool: Pool, tenant_id: str, secret_id: str) -> None:
    """Record that the secret was used, unless that was recorded within the last minute.

    last_used_at is advisory: writing it at most once a minute keeps token issuance cheap.
    """
    async with tenant_transaction(pool, tenant_id) as conn:
        await conn.execute(
            "UPDATE client_secrets SET last_used_at = now() WHERE id = $1 "
            "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            secret_id,
        )


async def signing_keys(conn: Connection | Pool, keep_retired_s: float = 0) -> list[StoredKey]:
    """The active key and those retired less than `keep_retired_s` ago, newest first."""
    rows = await conn.fetch(
        "SELECT kid, private_key, created_at, active FROM signing_keys "
        "WHERE active OR retired_at > now() - make_interval(secs => $1) "
        "ORDER BY created_at DESC",
        float(keep_retired_s),
    )
    return [
        StoredKey(row["kid"], bytes(row["private_key"]), row["created_at"], row["active"])
        for row in rows
    ]


async def lock_signing_keys(conn: Connection) -> None:
    """Hold the key-creation lock until the current transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", SIGNING_KEY_LOCK_ID)


async def retire_active_keys(conn: Connection) -> list[str]:
    """Stop signing with the active key(s); they stay published until their tokens expire."""
    rows = await conn.fetch(
        "UPDATE signing_keys SET active = false, retired_at = now() WHERE active RETURNING kid"
    )
    return [row["kid"] for row in rows]


async def delete_retired_keys(conn: Connection, keep_retired_s: float) -> list[str]:
    """Forget keys retired longer ago than every token they signed can live."""
    rows = await conn.fetch(
        "DELETE FROM signing_keys WHERE NOT active "
        "AND retired_at <= now() - make_interval(secs => $1) RETURNING kid",
        float(keep_retired_s),
    )
    return [row["kid"] for row in rows]


async def insert_signing_key(conn: Connection, kid: str, encrypted_pem: bytes) -> None:
    """Store a new active signing key."""
    await conn.execute(
        "INSERT INTO signing_keys (kid, private_key, active) VALUES ($1, $2, true)",
        kid,
        encrypted_pem,
    )
