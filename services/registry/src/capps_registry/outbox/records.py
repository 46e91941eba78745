"""From outbox entries and the apps' current rows to `capps.apps.v1` records, as pure functions.

A record always carries the state read at publish time, never a snapshot taken at change time:
whatever order entries are published in, the last record per app is its current state.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from capps_events import AppState, KafkaRecord, RateLimit, encode_app_deleted, encode_app_state
from capps_registry.models import Client

OutboxKind = Literal["state", "deleted"]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One unpublished change of an app: its new version and whether it was a deletion."""

    id: int
    app_id: str
    kind: OutboxKind
    version: int
    created_at: datetime


def relay_source(instance_id: str) -> str:
    """The CloudEvents `source` of records this registry instance publishes."""
    return f"//capps/registry/{instance_id}"


def app_state_of(client: Client) -> AppState:
    """The published state of an app."""
    return AppState(
        app_id=client.id,
        tenant_id=client.tenant_id,
        enabled=client.enabled,
        permissions=sorted(client.permissions),
        rate_limit=RateLimit(per_minute=client.per_minute, per_hour=client.per_hour),
        tokens_valid_after=client.tokens_valid_after,
        version=client.version,
        updated_at=client.updated_at,
        issuer=client.issuer,
    )


def plan_records(
    entries: Sequence[OutboxEntry], current: Mapping[str, Client], source: str
) -> list[KafkaRecord]:
    """One record per app named in `entries`, in the order of each app's first entry.

    An app still in `current` gets its current state (several entries of one app collapse into
    it); an app that is gone gets a tombstone carrying the newest version its entries name.
    Admin clients never reach the outbox, but are skipped here too rather than published.
    """
    newest: dict[str, OutboxEntry] = {}
    for entry in entries:
        held = newest.get(entry.app_id)
        if held is None or (entry.version, entry.id) > (held.version, held.id):
            newest[entry.app_id] = entry
    records = []
    for app_id, entry in newest.items():
        client = current.get(app_id)
        if client is None:
            records.append(encode_app_deleted(app_id, entry.version, entry.created_at, source))
        elif client.kind == "app":
            records.append(encode_app_state(app_state_of(client), source))
    return records
