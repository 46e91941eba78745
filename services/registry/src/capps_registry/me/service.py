"""The self-view of the calling app: its configuration, usage and rate-limit headroom."""

from datetime import UTC, datetime, timedelta

import asyncpg

from capps_registry.apps import repository as apps
from capps_registry.apps.service import app_view
from capps_registry.db import tenant_transaction
from capps_registry.errors import ApiError
from capps_registry.me.schemas import Headroom, MeOut
from capps_registry.models import Principal
from capps_registry.state import RegistryState
from capps_registry.usage.service import stats_of
from capps_usage.windows import read_current_windows


async def me(state: RegistryState, caller: Principal) -> MeOut:
    """The calling app's own view; its token was checked against its current state."""
    async with tenant_transaction(state.pool, caller.tenant_id) as conn:
        client = await apps.get_app(conn, caller.tenant_id, caller.client_id)
        ends = await apps.secrets_ends(conn, caller.tenant_id, [caller.client_id])
    if client is None:
        raise ApiError(404, "not_found", "the calling app no longer exists")
    now = datetime.now(UTC)
    stats = await stats_of(state, [client.id], now)
    try:
        windows = await read_current_windows(state.redis, state.pool, client.id, now)
    except (asyncpg.PostgresError, OSError):
        raise ApiError(503, "usage_unavailable", "usage stats are unavailable; retry") from None
    # The partner's own operations can watch when its credentials end, and rotate in time.
    view = app_view(client, stats.get(client.id), ends.get(client.id))
    return MeOut(
        **view.model_dump(exclude={"created_at", "updated_at"}),
        headroom=Headroom(
            minute_remaining=max(0, client.per_minute - windows.minute_requests),
            minute_resets_at=windows.minute_start + timedelta(minutes=1),
            hour_remaining=max(0, client.per_hour - windows.hour_requests),
            hour_resets_at=windows.hour_start + timedelta(hours=1),
            source=windows.source,
        ),
    )
