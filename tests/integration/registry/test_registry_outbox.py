"""The app-state outbox against real PostgreSQL and Kafka: every change reaches the apps topic.

Admin API tests go through the session's registry (its relay publishes to the session's topic);
relay tests run relays of their own over a separate database, so they decide what runs when.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from capps_events import AppState, decode_app_state
from capps_kit import postgres
from capps_registry.apps import repository as apps
from capps_registry.db import Pool, tenant_transaction
from capps_registry.outbox import repository as outbox
from capps_registry.outbox.relay import LISTENER_APPLICATION_NAME, OutboxRelay
from capps_registry.tenants.service import create_tenant
from tests.infra import free_port, kafka_security
from tests.integration.registry.conftest import (
    TEST_PEPPER,
    Running,
    Tenant,
    app_url,
    migrated_database,
    token_for,
)
from tests.integration.registry.test_registry_cli import run_cli

pytestmark = pytest.mark.integration

# How long a relay under test polls: far longer than any wait below, so a record that
# arrives was brought by NOTIFY, not by the poll.
SLOW_POLL_S = 300.0


@dataclass
class Seen:
    """One record of the apps topic."""

    key: str
    state: AppState | None
    headers: dict[str, bytes]


@dataclass
class TopicReader:
    """Reads an apps topic from its beginning and keeps every record, in log order per key."""

    consumer: AIOKafkaConsumer
    records: list[Seen] = field(default_factory=list)

    def of(self, app_id: str) -> list[AppState | None]:
        """The app's states in the order the log holds them (None for a tombstone)."""
        return [seen.state for seen in self.records if seen.key == app_id]

    def at_version(self, app_id: str, version: int) -> Callable[[], bool]:
        """A condition: the app's last state record has this version."""
        return lambda: self.latest_version(app_id) == version

    def latest_version(self, app_id: str) -> int | None:
        """The version of the app's last state record, or None."""
        states = [state for state in self.of(app_id) if state is not None]
        return states[-1].version if states else None

    async def wait_for(self, ready: Callable[[], bool], timeout_s: float = 10.0) -> float:
        """Read until `ready()`; return the seconds it took, fail after `timeout_s`."""
        started = time.monotonic()
        while not ready():
            assert time.monotonic() - started < timeout_s, "the topic never showed it"
            batches = await self.consumer.getmany(timeout_ms=20)
            for messages in batches.values():
                for message in messages:
                    app_id, state = decode_app_state(message.key, message.value)
                    headers = {name: bytes(value) for name, value in message.headers}
                    self.records.append(Seen(app_id, state, headers))
        return time.monotonic() - started


async def open_reader(bootstrap_servers: str, topic: str) -> TopicReader:
    """A reader of every partition of `topic`, from the beginning (no group, no commits)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_security().client_options(),
    )
    await consumer.start()
    return TopicReader(consumer)


@pytest.fixture
async def reader(infra: Any, apps_topic: str) -> AsyncIterator[TopicReader]:
    """A reader of the session's apps topic."""
    opened = await open_reader(infra.kafka_bootstrap_servers, apps_topic)
    try:
        yield opened
    finally:
        await opened.consumer.stop()


async def pending(pool: Pool, app_id: str) -> int:
    """Outbox entries of the app not yet published."""
    count: int = await pool.fetchval("SELECT count(*) FROM app_outbox WHERE app_id = $1", app_id)
    return count


async def wait_until_published(pool: Pool, app_id: str, timeout_s: float = 5.0) -> None:
    """Entries are deleted just after the broker's acknowledgement; wait for that too."""
    deadline = time.monotonic() + timeout_s
    while await pending(pool, app_id):
        assert time.monotonic() < deadline, "outbox entries were never deleted"
        await asyncio.sleep(0.02)


async def test_every_change_of_an_app_reaches_the_topic(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient, reader: TopicReader
) -> None:
    created = await admin.post(
        "/v1/apps", json={"name": "Outbox", "permissions": ["Alert.Read.All"]}
    )
    assert created.status_code == 201, created.text
    app_id = created.json()["id"]
    secret = created.json()["client_secret"]
    await reader.wait_for(reader.at_version(app_id, 1))
    first = reader.of(app_id)[-1]
    assert first is not None
    assert first.tenant_id == tenant.tenant_id
    assert first.enabled is True
    assert first.permissions == ["Alert.Read.All"]
    assert (first.rate_limit.per_minute, first.rate_limit.per_hour) == (100, 1500)
    token_before_disable = await token_for(registry, app_id, secret)

    changes: list[tuple[dict[str, Any], int]] = [
        ({"permissions": ["Machine.Isolate", "Alert.Read.All"]}, 2),
        ({"enabled": False}, 3),
        ({"enabled": True}, 4),
    ]
    for change, version in changes:
        patched = await admin.patch(f"/v1/apps/{app_id}", json=change)
        assert patched.status_code == 200, patched.text
        await reader.wait_for(reader.at_version(app_id, version))
    states = [state for state in reader.of(app_id) if state is not None]
    assert [state.version for state in states] == [1, 2, 3, 4]
    v1, v2, v3, v4 = states
    assert v2.permissions == ["Alert.Read.All", "Machine.Isolate"]
    assert (v3.enabled, v4.enabled) == (False, True)
    # The disable moved the cut past every token issued so far; enabling again kept it there.
    assert v1.tokens_valid_after == v2.tokens_valid_after < v3.tokens_valid_after
    assert v4.tokens_valid_after == v3.tokens_valid_after
    assert v3.tokens_valid_after.timestamp() > time.time() - 5

    admin_auth = httpx.BasicAuth(tenant.client_id, tenant.client_secret)
    old = await registry.client.post(
        "/oauth2/introspect", data={"token": token_before_disable}, auth=admin_auth
    )
    assert old.json() == {"active": False}
    # Tokens carry whole seconds: one issued from the cut on is valid again.
    await asyncio.sleep(max(0.0, v4.tokens_valid_after.timestamp() - time.time()))
    fresh_token = await token_for(registry, app_id, secret)
    fresh = await registry.client.post(
        "/oauth2/introspect", data={"token": fresh_token}, auth=admin_auth
    )
    assert fresh.json()["active"] is True

    deleted = await admin.delete(f"/v1/apps/{app_id}")
    assert deleted.status_code == 204
    await reader.wait_for(lambda: reader.of(app_id)[-1] is None)
    tombstone = [seen for seen in reader.records if seen.key == app_id][-1]
    assert tombstone.headers["ce_id"] == f"{app_id}:5".encode()
    assert tombstone.headers["ce_type"] == b"dev.connectedapps.app.deleted.v1"
    assert len(reader.of(app_id)) == 5

    await wait_until_published(registry.state.pool, app_id)


async def test_admin_clients_are_not_published(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient, reader: TopicReader
) -> None:
    app_id = (await admin.post("/v1/apps", json={"name": "Marker", "permissions": []})).json()["id"]
    await reader.wait_for(reader.at_version(app_id, 1))
    assert reader.of(tenant.client_id) == []


async def test_unknown_app_changes_write_nothing(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient, reader: TopicReader
) -> None:
    # uuid-shaped, so the request reaches the database rather than being refused before it.
    missing = str(uuid.uuid4())
    assert (await admin.patch(f"/v1/apps/{missing}", json={"enabled": False})).status_code == 404
    assert (await admin.delete(f"/v1/apps/{missing}")).status_code == 404
    # The relay publishes in outbox order: once a later marker app is on the topic, anything
    # the two calls had enqueued would be there before it (and gone from the outbox).
    marker = (await admin.post("/v1/apps", json={"name": "After", "permissions": []})).json()
    await reader.wait_for(lambda: reader.latest_version(marker["id"]) == 1)
    assert reader.of(missing) == []
    pending = await registry.state.pool.fetchval(
        "SELECT count(*) FROM app_outbox WHERE app_id = $1", missing
    )
    assert pending == 0
    async with tenant_transaction(registry.state.pool, tenant.tenant_id) as conn:
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE app_id = $1", missing
        )
    assert audited == 0


async def test_republish_enqueues_every_app_again(
    registry: Running, registry_database: str, admin: httpx.AsyncClient, reader: TopicReader
) -> None:
    app_id = (await admin.post("/v1/apps", json={"name": "Again", "permissions": []})).json()["id"]
    await reader.wait_for(lambda: len(reader.of(app_id)) == 1)
    done = await run_cli("apps", "republish", database_url=registry_database)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["enqueued"] >= 1
    await reader.wait_for(lambda: len(reader.of(app_id)) == 2)
    first, again = reader.of(app_id)
    assert first == again
    await wait_until_published(registry.state.pool, app_id)


async def test_outbox_metrics_count_what_is_published(
    registry: Running, admin: httpx.AsyncClient, reader: TopicReader
) -> None:
    def published() -> float:
        return REGISTRY.get_sample_value("capps_registry_outbox_published_total") or 0.0

    before = published()
    app_id = (await admin.post("/v1/apps", json={"name": "Metered", "permissions": []})).json()[
        "id"
    ]
    await reader.wait_for(lambda: reader.latest_version(app_id) == 1)
    await wait_until_published(registry.state.pool, app_id)
    # The relay counts a round once its transaction has committed, a step after the row is gone.
    await wait_until(lambda: published() >= before + 1)
    body = (await registry.client.get("/metrics")).text
    samples = [line for line in body.splitlines() if not line.startswith("#")]
    assert any(line.startswith("capps_registry_outbox_backlog ") for line in samples)
    assert any(line.startswith("capps_registry_outbox_oldest_age_seconds ") for line in samples)


# Relays of the tests' own, over a database no other relay reads.


@pytest.fixture(scope="module")
async def relay_database(infra: Any) -> AsyncIterator[str]:
    """A migrated database with no registry (and so no relay) attached, as the service's role."""
    async with migrated_database(infra.database_url) as url:
        yield app_url(url)


@pytest.fixture(scope="module")
async def relay_pool(relay_database: str) -> AsyncIterator[Pool]:
    """A pool on the relay tests' database."""
    pool = await postgres.create_pool(relay_database)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass(frozen=True, slots=True)
class RelayWorld:
    """What relay tests work with: their database, a tenant in it, Kafka and the topic."""

    database_url: str
    pool: Pool
    tenant_id: str
    bootstrap_servers: str
    topic: str

    def relay(
        self, name: str, bootstrap_servers: str | None = None, poll_interval_s: float = 0.2
    ) -> OutboxRelay:
        """A relay polling often, so a lost notification costs little time in tests."""
        return OutboxRelay(
            self.pool,
            database_url=self.database_url,
            bootstrap_servers=bootstrap_servers or self.bootstrap_servers,
            topic=self.topic,
            instance_id=name,
            poll_interval_s=poll_interval_s,
            security=kafka_security(),
        )


@pytest.fixture
async def world(infra: Any, apps_topic: str, relay_database: str, relay_pool: Pool) -> RelayWorld:
    """A fresh tenant in the relay tests' database, and where its relays publish."""
    tenant = await create_tenant(relay_pool, TEST_PEPPER.encode(), f"relay-{uuid.uuid4().hex[:8]}")
    return RelayWorld(
        relay_database, relay_pool, tenant.tenant_id, infra.kafka_bootstrap_servers, apps_topic
    )


async def new_app(pool: Pool, tenant_id: str) -> str:
    """An app created the way the API does it: the row and its outbox entry in one transaction."""
    async with tenant_transaction(pool, tenant_id) as conn:
        client = await apps.insert_client(
            conn,
            client_id=uuid.uuid4().hex,
            tenant_id=tenant_id,
            kind="app",
            name="relay test",
            description="",
            permissions=[],
            per_minute=100,
            per_hour=1500,
        )
        await outbox.enqueue(conn, client.id, "state", client.version)
    return client.id


async def set_rate(pool: Pool, tenant_id: str, app_id: str, per_minute: int) -> int:
    """Change the app's rate limit as the API does; return its new version."""
    async with tenant_transaction(pool, tenant_id) as conn:
        client = await apps.update_app(
            conn, tenant_id, app_id, per_minute=per_minute, per_hour=per_minute * 60
        )
        assert client is not None
        await outbox.enqueue(conn, app_id, "state", client.version)
    return client.version


def failures(stage: str) -> float:
    return (
        REGISTRY.get_sample_value("capps_registry_outbox_publish_failures_total", {"stage": stage})
        or 0.0
    )


async def test_entries_wait_while_kafka_is_unreachable(
    world: RelayWorld, reader: TopicReader
) -> None:
    before = failures("kafka")
    down = world.relay("down", bootstrap_servers=f"127.0.0.1:{free_port()}")
    down.start()
    try:
        app_id = await new_app(world.pool, world.tenant_id)
        version = await set_rate(world.pool, world.tenant_id, app_id, 7)
        await wait_until(lambda: failures("kafka") > before and down.backlog[0] >= 2)
        assert await pending(world.pool, app_id) == 2
        waiting, oldest_s = down.backlog
        assert waiting >= 2
        assert oldest_s > 0
    finally:
        await down.stop()

    up = world.relay("up")
    up.start()
    try:
        await reader.wait_for(lambda: reader.latest_version(app_id) == version)
        await wait_until_published(world.pool, app_id)
    finally:
        await up.stop()
    # Both entries were waiting when the relay got through: one record of the current state.
    [state] = reader.of(app_id)
    assert state is not None
    assert state.rate_limit.per_minute == 7


async def test_two_relays_keep_each_apps_versions_in_order(
    world: RelayWorld, reader: TopicReader
) -> None:
    relays = [world.relay(name) for name in ("relay-a", "relay-b")]
    for each in relays:
        each.start()
    try:
        app_ids = [await new_app(world.pool, world.tenant_id) for _ in range(4)]

        async def churn(app_id: str) -> int:
            version = 1
            for step in range(15):
                version = await set_rate(world.pool, world.tenant_id, app_id, 10 + step)
                await asyncio.sleep(0.005 * (step % 3))
            return version

        finals = dict(zip(app_ids, await asyncio.gather(*map(churn, app_ids)), strict=True))
        await reader.wait_for(
            lambda: all(reader.latest_version(app) == finals[app] for app in app_ids)
        )
        for app_id in app_ids:
            await wait_until_published(world.pool, app_id)
    finally:
        for each in relays:
            await each.stop()
    for app_id in app_ids:
        versions = [state.version for state in reader.of(app_id) if state is not None]
        assert versions == sorted(versions), (app_id, versions)
        assert versions[-1] == finals[app_id] == 16
        last = reader.of(app_id)[-1]
        assert last is not None
        assert last.rate_limit.per_minute == 24


async def test_relay_listens_again_after_losing_its_connection(
    world: RelayWorld, reader: TopicReader
) -> None:
    running = world.relay("listener")
    running.start()
    try:
        first = await new_app(world.pool, world.tenant_id)
        await reader.wait_for(lambda: reader.latest_version(first) == 1)
        killed = await world.pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            LISTENER_APPLICATION_NAME,
        )
        assert killed == 1
        # The poll still publishes while the relay reconnects, then NOTIFY wakes it again.
        second = await new_app(world.pool, world.tenant_id)
        await reader.wait_for(lambda: reader.latest_version(second) == 1)
        await wait_until_listening(world.pool)
        third = await new_app(world.pool, world.tenant_id)
        await reader.wait_for(lambda: reader.latest_version(third) == 1)
    finally:
        await running.stop()


async def test_notify_wakes_the_relay_without_its_poll(
    world: RelayWorld, reader: TopicReader
) -> None:
    """With a poll of five minutes, only NOTIFY can bring a change within the wait."""
    running = world.relay("notified", poll_interval_s=SLOW_POLL_S)
    running.start()
    try:
        await wait_until_listening(world.pool)
        first = await new_app(world.pool, world.tenant_id)
        await reader.wait_for(lambda: reader.latest_version(first) == 1, timeout_s=30.0)
        version = await set_rate(world.pool, world.tenant_id, first, 9)
        await reader.wait_for(lambda: reader.latest_version(first) == version, timeout_s=30.0)
    finally:
        await running.stop()


async def wait_until(ready: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Until `ready()` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


async def wait_until_listening(pool: Pool, timeout_s: float = 10.0) -> None:
    """Until a relay's LISTEN connection is back."""
    deadline = time.monotonic() + timeout_s
    while not await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = $1 AND datname = current_database()",
        LISTENER_APPLICATION_NAME,
    ):
        assert time.monotonic() < deadline, "the relay never listened again"
        await asyncio.sleep(0.05)
