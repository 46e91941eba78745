"""The pure parts of the outbox: planning records, app state, the `iat` cut-off."""

from datetime import UTC, datetime, timedelta

from capps_events import decode_app_state
from capps_registry.models import Client
from capps_registry.oauth.claims import issued_before
from capps_registry.outbox.records import (
    OutboxEntry,
    app_state_of,
    plan_records,
    relay_source,
)

MOMENT = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)
SOURCE = relay_source("registry-1")


def client(app_id: str, version: int = 1, kind: str = "app", enabled: bool = True) -> Client:
    return Client(
        app_id,
        "tenant-1",
        "app" if kind == "app" else "admin",
        "name",
        "",
        enabled,
        ["Machine.Isolate", "Alert.Read.All"],
        100,
        1500,
        MOMENT,
        MOMENT + timedelta(minutes=version),
        version,
        MOMENT - timedelta(seconds=5),
    )


def entry(entry_id: int, app_id: str, version: int, kind: str = "state") -> OutboxEntry:
    return OutboxEntry(
        entry_id,
        app_id,
        "deleted" if kind == "deleted" else "state",
        version,
        MOMENT + timedelta(seconds=entry_id),
    )


def test_app_state_carries_what_the_gateway_needs() -> None:
    state = app_state_of(client("a1", version=4, enabled=False))
    assert state.app_id == "a1"
    assert state.tenant_id == "tenant-1"
    assert state.enabled is False
    assert state.permissions == ["Alert.Read.All", "Machine.Isolate"]
    assert (state.rate_limit.per_minute, state.rate_limit.per_hour) == (100, 1500)
    assert state.tokens_valid_after == MOMENT - timedelta(seconds=5)
    assert state.version == 4
    assert state.updated_at == MOMENT + timedelta(minutes=4)


def test_entries_of_one_app_collapse_into_its_current_state() -> None:
    entries = [entry(1, "a1", 1), entry(2, "b2", 1), entry(3, "a1", 2), entry(4, "a1", 3)]
    current = {"a1": client("a1", version=5), "b2": client("b2", version=1)}
    records = plan_records(entries, current, SOURCE)
    assert [record.key for record in records] == [b"a1", b"b2"]
    app_id, state = decode_app_state(records[0].key, records[0].value)
    assert app_id == "a1"
    assert state is not None
    # The state read at publish time wins over the versions the entries remember.
    assert state.version == 5
    headers = dict(records[0].headers)
    assert headers["ce_source"] == b"//capps/registry/registry-1"
    assert headers["ce_id"] == b"a1:5"


def test_a_gone_app_gets_a_tombstone_with_its_newest_version() -> None:
    entries = [entry(1, "a1", 3), entry(2, "a1", 4, kind="deleted"), entry(3, "a1", 2)]
    [record] = plan_records(entries, {}, SOURCE)
    assert record.key == b"a1"
    assert record.value is None
    headers = dict(record.headers)
    assert headers["ce_type"] == b"dev.connectedapps.app.deleted.v1"
    assert headers["ce_id"] == b"a1:4"
    assert decode_app_state(record.key, record.value) == ("a1", None)


def test_admin_clients_are_never_published() -> None:
    assert plan_records([entry(1, "adm", 1)], {"adm": client("adm", kind="admin")}, SOURCE) == []


def test_no_entries_no_records() -> None:
    assert plan_records([], {"a1": client("a1")}, SOURCE) == []


def test_issued_before_compares_whole_seconds() -> None:
    cutoff = datetime(2025, 5, 1, 12, 0, 7, tzinfo=UTC)
    second = int(cutoff.timestamp())
    assert issued_before(second - 1, cutoff)
    assert not issued_before(second, cutoff)
    assert not issued_before(second + 1, cutoff)
    assert issued_before(None, cutoff)
    assert issued_before("12", cutoff)
    assert issued_before(True, cutoff)
