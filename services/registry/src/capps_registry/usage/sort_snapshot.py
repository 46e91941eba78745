"""Each tenant's trailing-24 h request counts of all its apps, kept briefly to sort lists by.

Sorting a list by requests needs the count of every app of the tenant, not only the page's:
about 25 hash reads per app in the hot store, so a tenant of 1,000 apps costs Redis far more
than the page itself. The counts are kept as one Redis value per tenant (JSON: when they were
counted, and app id -> count; one bulk reply reads far faster than a hash of 1,000 fields).
A snapshot younger than FRESH_S seconds is used as it is; an older one is used while one
background task per tenant and process counts again; only a tenant with no snapshot at all
(none in KEEP_S seconds) waits for the count. Apps created since the snapshot are counted on
the spot. The page's rows always show their own fresh stats: only the order may lag the
counts by a few seconds, which paging by key tolerates anyway.
"""

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from redis.exceptions import RedisError

from capps_registry.apps import repository as apps
from capps_registry.state import RegistryState
from capps_registry.usage.service import stats_of

log = logging.getLogger(__name__)

FRESH_S = 10.0
KEEP_S = 900
_PREFIX = "capps:registry:requests24h"


def snapshot_key(tenant_id: str) -> str:
    """The key of one tenant's snapshot."""
    return f"{_PREFIX}:{tenant_id}"


async def requests_24h(
    state: RegistryState, app_ids: Sequence[str], now: datetime
) -> dict[str, int]:
    """Exact counts (the hot store, or PostgreSQL behind it), without the 30-day trends."""
    stats = await stats_of(state, app_ids, now, with_trend=False)
    return {app_id: found.requests_24h for app_id, found in stats.items()}


async def _store(state: RegistryState, tenant_id: str, counts: dict[str, int], at_ms: int) -> None:
    """Replace the tenant's snapshot: one JSON value, read back in one reply."""
    value = orjson.dumps({"at": at_ms, "counts": counts})
    try:
        await state.redis.set(snapshot_key(tenant_id), value, ex=KEEP_S)
    except (RedisError, OSError) as exc:
        log.warning("sort snapshot not stored", extra={"error": type(exc).__name__})


async def _count_and_store(
    state: RegistryState, tenant_id: str, app_ids: Sequence[str]
) -> dict[str, int]:
    at_ms = int(time.time() * 1000)
    counts = await requests_24h(state, app_ids, datetime.fromtimestamp(at_ms / 1000, UTC))
    await _store(state, tenant_id, counts, at_ms)
    return counts


async def _refresh(state: RegistryState, tenant_id: str) -> None:
    try:
        await _count_and_store(state, tenant_id, await apps.app_ids(state.pool, tenant_id))
    except Exception:  # a background task has no caller to tell; the next list retries
        log.exception("sort snapshot not refreshed")


async def _read(state: RegistryState, tenant_id: str) -> tuple[dict[str, int], float | None]:
    """The stored counts and their age in seconds (None when there is no snapshot)."""
    try:
        stored = await state.redis.get(snapshot_key(tenant_id))
    except (RedisError, OSError) as exc:
        log.warning("sort snapshot unavailable", extra={"error": type(exc).__name__})
        return {}, None
    if stored is None:
        return {}, None
    snapshot = orjson.loads(stored)
    counts: dict[str, int] = snapshot["counts"]
    return counts, time.time() - snapshot["at"] / 1000


async def sorted_requests_24h(
    state: RegistryState, tenant_id: str, app_ids: Sequence[str], *, every_app: bool = True
) -> dict[str, int]:
    """Requests in the trailing 24 h of each of the tenant's `app_ids`, for sorting.

    `every_app` says `app_ids` are all the tenant's apps (not a filtered few), so counting
    them makes a whole snapshot; otherwise the snapshot is made in the background.
    """
    counts, age = await _read(state, tenant_id)
    if age is None:
        if every_app:
            return await _count_and_store(state, tenant_id, app_ids)
        state.refreshes.start_once(snapshot_key(tenant_id), lambda: _refresh(state, tenant_id))
        return await requests_24h(state, app_ids, datetime.now(UTC))
    if age > FRESH_S:
        state.refreshes.start_once(snapshot_key(tenant_id), lambda: _refresh(state, tenant_id))
    missing = [app_id for app_id in app_ids if app_id not in counts]
    if missing:
        counts.update(await requests_24h(state, missing, datetime.now(UTC)))
    return counts
