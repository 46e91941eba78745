"""The local view of app state: version ordering, tombstones, bad records, waiting for an app."""

import asyncio
from datetime import UTC, datetime

from capps_events import AppState, RateLimit, encode_app_deleted, encode_app_state
from capps_gateway.appstate import AppStateTable, AppStateView

NOW = datetime(2025, 1, 1, tzinfo=UTC)
SOURCE = "//capps/test"


def state(app_id: str = "app-1", version: int = 1, *, enabled: bool = True) -> AppState:
    return AppState(
        app_id=app_id,
        tenant_id="tenant-1",
        enabled=enabled,
        permissions=["Alert.Read.All"],
        rate_limit=RateLimit(per_minute=100, per_hour=1500),
        tokens_valid_after=NOW,
        version=version,
        updated_at=NOW,
    )


def test_newer_version_replaces_older_and_older_is_ignored() -> None:
    table = AppStateTable()
    assert table.apply("app-1", state(version=2))
    assert table.apply("app-1", state(version=3, enabled=False))
    assert not table.apply("app-1", state(version=2))
    assert not table.apply("app-1", state(version=3))
    held = table.get("app-1")
    assert held is not None
    assert (held.version, held.enabled) == (3, False)
    assert len(table) == 1


def test_tombstone_deletes_and_a_late_state_cannot_resurrect() -> None:
    table = AppStateTable()
    table.apply("app-1", state(version=1))
    assert table.apply("app-1", None)
    assert table.get("app-1") is None
    assert table.is_deleted("app-1")
    assert not table.apply("app-1", state(version=1))
    assert not table.apply("app-1", state(version=9))
    assert table.get("app-1") is None
    assert len(table) == 0


def test_tombstone_of_an_app_never_seen_is_remembered() -> None:
    table = AppStateTable()
    assert table.apply("app-2", None)
    assert not table.apply("app-2", None)
    assert not table.apply("app-2", state("app-2"))


def test_deleted_ids_are_bounded() -> None:
    table = AppStateTable(deleted_capacity=2)
    for app_id in ("a", "b", "c"):
        table.apply(app_id, None)
    assert not table.is_deleted("a")
    assert table.is_deleted("b")
    assert table.is_deleted("c")


def view() -> AppStateView:
    return AppStateView("127.0.0.1:1", "capps.apps.v1.unit", "unit")


def test_records_are_decoded_and_bad_ones_skipped() -> None:
    apps = view()
    record = encode_app_state(state(version=4), SOURCE)
    apps.apply_record(b"app-1", b"{not json")
    apps.apply_record(None, record.value)
    apps.apply_record(b"other-app", record.value)
    assert apps.get("app-1") is None
    apps.apply_record(record.key, record.value)
    held = apps.get("app-1")
    assert held is not None
    assert held.version == 4
    tombstone = encode_app_deleted("app-1", 5, NOW, SOURCE)
    apps.apply_record(tombstone.key, tombstone.value)
    assert apps.get("app-1") is None


async def test_wait_for_returns_as_soon_as_the_state_arrives() -> None:
    apps = view()
    record = encode_app_state(state("app-new"), SOURCE)
    # Their own timeout is far beyond the outer deadline: only the arrival can end them in time.
    waiters = [asyncio.create_task(apps.wait_for("app-new", 600.0)) for _ in range(3)]
    await asyncio.sleep(0)  # one loop turn: the three tasks run up to their wait
    apps.apply_record(record.key, record.value)
    results = await asyncio.wait_for(asyncio.gather(*waiters), 30)
    assert [found.app_id if found else None for found in results] == ["app-new"] * 3
    assert apps._waiters == {}


async def test_wait_for_gives_up_after_its_timeout() -> None:
    apps = view()
    assert await asyncio.wait_for(apps.wait_for("app-missing", 0.2), 30) is None
    assert apps._waiters == {}


async def test_wait_for_a_deleted_app_does_not_wait() -> None:
    apps = view()
    tombstone = encode_app_deleted("app-gone", 2, NOW, SOURCE)
    apps.apply_record(tombstone.key, tombstone.value)
    # A wait of its own 600 s would blow the outer deadline.
    assert await asyncio.wait_for(apps.wait_for("app-gone", 600.0), 30) is None


async def test_tombstone_wakes_waiters_with_nothing() -> None:
    apps = view()
    waiter = asyncio.create_task(apps.wait_for("app-x", 5.0))
    await asyncio.sleep(0.05)
    tombstone = encode_app_deleted("app-x", 1, NOW, SOURCE)
    apps.apply_record(tombstone.key, tombstone.value)
    assert await asyncio.wait_for(waiter, 1.0) is None
