"""SQL of the audit trail: record an event in the caller's transaction, read a page."""

import json
from typing import Any

from capps_registry.db import Connection, Pool, tenant_scope
from capps_registry.models import AuditEvent, Principal


async def record(
    conn: Connection,
    actor: Principal,
    action: str,
    *,
    app_id: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Write one event; call it inside the transaction that makes the change."""
    await conn.execute(
        "INSERT INTO audit_events "
        "(tenant_id, app_id, actor, action, before, after, request_id, via) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8)",
        actor.tenant_id,
        app_id,
        actor.client_id,
        action,
        None if before is None else json.dumps(before),
        None if after is None else json.dumps(after),
        actor.request_id,
        actor.via,
    )


async def page(
    db: Connection | Pool,
    tenant_id: str,
    *,
    app_id: str | None,
    before_id: int | None,
    limit: int,
) -> list[AuditEvent]:
    """Up to `limit` events of the tenant (of one app if given), newest first, below before_id."""
    async with tenant_scope(db, tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT id, tenant_id, app_id, actor, action, at, before, after, request_id, via "
            "FROM audit_events WHERE tenant_id = $1 AND ($2::text IS NULL OR app_id = $2) "
            "AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
            tenant_id,
            app_id,
            before_id,
            limit,
        )
    return [
        AuditEvent(
            id=row["id"],
            tenant_id=row["tenant_id"],
            app_id=row["app_id"],
            actor=row["actor"],
            action=row["action"],
            at=row["at"],
            before=None if row["before"] is None else json.loads(row["before"]),
            after=None if row["after"] is None else json.loads(row["after"]),
            request_id=row["request_id"],
            via=row["via"],
        )
        for row in rows
    ]
