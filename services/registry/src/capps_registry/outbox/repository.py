"""SQL of the outbox: enqueue a change in the caller's transaction, claim, lock, read, delete.

Queries splice in only the constant CLIENT_COLUMNS (hence the S608 waiver); values are
always bound parameters.
"""

from collections.abc import Sequence

from capps_registry.db import CLIENT_COLUMNS, Connection, Pool, client_tenants, set_tenant
from capps_registry.models import Client
from capps_registry.outbox.records import OutboxEntry, OutboxKind

# The channel the table's trigger notifies on every insert (see migration 0002).
NOTIFY_CHANNEL = "capps_app_outbox"
# First key of the two-key advisory locks that serialise publishing per app; that key space
# is separate from the single-bigint one the signing-key lock uses.
APP_LOCK_NAMESPACE = 0x63617070


async def enqueue(conn: Connection, app_id: str, kind: OutboxKind, version: int) -> None:
    """Record a change of an app; call it inside the transaction that makes the change."""
    await conn.execute(
        "INSERT INTO app_outbox (app_id, kind, version) VALUES ($1, $2, $3)",
        app_id,
        kind,
        version,
    )


async def enqueue_every_app(conn: Connection | Pool) -> int:
    """Record the current state of every app (of every tenant); return how many.

    Through the SECURITY DEFINER function of migration 0006: no tenant's rows are read here.
    """
    count = await conn.fetchval("SELECT registry_enqueue_every_app()")
    return int(count)


async def claim(conn: Connection, limit: int) -> list[OutboxEntry]:
    """Lock up to `limit` unpublished entries, oldest first, skipping those another relay holds."""
    rows = await conn.fetch(
        "SELECT id, app_id, kind, version, created_at FROM app_outbox "
        "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [
        OutboxEntry(row["id"], row["app_id"], row["kind"], row["version"], row["created_at"])
        for row in rows
    ]


async def lock_apps(conn: Connection, app_ids: Sequence[str]) -> list[str]:
    """The apps whose publishing lock this transaction got; another relay holds the rest.

    Holding an app's lock from reading its state until the broker acknowledged the record keeps
    two relays from publishing one app's states out of order. A hash collision only makes two
    apps wait for each other.
    """
    rows = await conn.fetch(
        "SELECT app_id FROM unnest($1::text[]) AS app_id "
        "WHERE pg_try_advisory_xact_lock($2, hashtext(app_id))",
        list(app_ids),
        APP_LOCK_NAMESPACE,
    )
    return [row["app_id"] for row in rows]


async def current_apps(conn: Connection, app_ids: Sequence[str]) -> dict[str, Client]:
    """The apps among `app_ids` that still exist, by id, whichever tenants they belong to.

    The transaction acts for each of their tenants in turn (row-level security shows one
    tenant at a time); the setting lasts until the next tenant's or the transaction's end.
    """
    by_tenant: dict[str, list[str]] = {}
    for app_id, tenant_id in (await client_tenants(conn, app_ids)).items():
        by_tenant.setdefault(tenant_id, []).append(app_id)
    found: dict[str, Client] = {}
    for tenant_id, ids in sorted(by_tenant.items()):
        await set_tenant(conn, tenant_id)
        rows = await conn.fetch(
            f"SELECT {CLIENT_COLUMNS} FROM oauth_clients "  # noqa: S608
            "WHERE id = ANY($1::text[]) AND kind = 'app'",
            ids,
        )
        found.update((row["id"], Client.from_row(row)) for row in rows)
    return found


async def delete_entries(conn: Connection, ids: Sequence[int]) -> None:
    """Forget published entries."""
    await conn.execute("DELETE FROM app_outbox WHERE id = ANY($1::bigint[])", list(ids))


async def backlog(conn: Connection | Pool) -> tuple[int, float]:
    """How many entries wait, and the age in seconds of the oldest (0 when none)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS waiting, "
        "COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0) AS oldest "
        "FROM app_outbox"
    )
    assert row is not None
    return int(row["waiting"]), float(row["oldest"])
