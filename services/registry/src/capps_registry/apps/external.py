"""Apps of external identity providers: registered by their client id there, no secret here.

Such an app has state, permissions and limits like any other; its tokens come from its own
provider (the gateway verifies them against that issuer's keys), so the registry stores no
secret for it and its token endpoint never issues it a token (no secret ever matches).
"""

import asyncpg

from capps_registry.apps.schemas import AppCreate, AppCreated
from capps_registry.apps.service import app_snapshot, app_view, checked_permissions
from capps_registry.audit import repository as audit
from capps_registry.db import CLIENT_COLUMNS, Connection, tenant_transaction
from capps_registry.errors import ApiError
from capps_registry.models import Client, Principal
from capps_registry.outbox import repository as outbox
from capps_registry.state import RegistryState
from capps_registry.usage.service import stats_of


async def insert_external_client(
    conn: Connection, tenant_id: str, body: AppCreate, permissions: list[str]
) -> Client:
    """Store the app under its external client id, with its issuer and no secret."""
    assert body.external is not None
    row = await conn.fetchrow(
        "INSERT INTO oauth_clients (id, tenant_id, kind, name, description, permissions, "  # noqa: S608
        "rate_limit_per_minute, rate_limit_per_hour, issuer) "
        "VALUES ($1, $2, 'app', $3, $4, $5, $6, $7, $8) "
        f"RETURNING {CLIENT_COLUMNS}",
        body.external.client_id,
        tenant_id,
        body.name,
        body.description,
        permissions,
        body.rate_limit.per_minute,
        body.rate_limit.per_hour,
        body.external.issuer,
    )
    return Client.from_row(row)


async def create_external_app(
    state: RegistryState, actor: Principal, body: AppCreate
) -> AppCreated:
    """Register an external provider's client as an app; 409 if its client id is taken."""
    assert body.external is not None
    permissions = checked_permissions(state.catalog, body.permissions)
    async with tenant_transaction(state.pool, actor.tenant_id) as conn:
        try:
            client = await insert_external_client(conn, actor.tenant_id, body, permissions)
        except asyncpg.UniqueViolationError:
            # Client ids are app ids: unique across tenants and issuers alike.
            raise ApiError(
                409, "conflict", f"an app with client id {body.external.client_id} exists"
            ) from None
        except asyncpg.ForeignKeyViolationError:
            raise ApiError(404, "not_found", f"no tenant {actor.tenant_id}") from None
        await outbox.enqueue(conn, client.id, "state", client.version)
        after = {**app_snapshot(client), "external": {"issuer": client.issuer}}
        await audit.record(conn, actor, "app.create", app_id=client.id, before=None, after=after)
    stats = await stats_of(state, [client.id])
    view = app_view(client, stats.get(client.id))
    return AppCreated(**view.model_dump(), client_secret=None)
