"""Fixtures of the aggregator's integration tests: a migrated throwaway database, unique
topics, a Redis client that cleans up after itself, and helpers to make and read records."""

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from capps_aggregator.migrate import upgrade_head
from capps_aggregator.rollup import PartitionBatch, SourceRecord
from capps_events import RequestEvent, TopicSpec, encode_request
from capps_events.testing import request_event
from capps_kit.kafka import make_producer
from capps_kit.postgres import asyncpg_dsn
from capps_kit.redis import create_redis
from capps_usage.keys import HOT_READY_KEY, OFFSETS_KEY
from tests.infra import drop_database, free_port, throwaway_topics
from tests.integration.aggregator.worker_process import Worker

# The aggregator's tests rebuild and flush the hot store, so they keep to a Redis database of
# their own: the stack's aggregator and the other tests' counters in database 0 stay intact.
AGGREGATOR_TEST_REDIS_DB = 11

GARBAGE_HEADERS = [("ce_type", b"dev.connectedapps.request.v1"), ("ce_specversion", b"1.0")]


@dataclass(frozen=True, slots=True)
class Topics:
    """A unique requests topic and its unique DLQ topic."""

    requests: str
    dlq: str
    partitions: int


def _make_event(app_id: str, tenant_id: str, moment: datetime) -> RequestEvent:
    return request_event(time=moment, tenant_id=tenant_id, app_id=app_id, bytes_out=64)


@pytest.fixture
def run_id() -> str:
    """A short id that makes every name of one test unique on the shared servers."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def usage_db(infra: Any, run_id: str) -> AsyncIterator[str]:
    """A fresh database with the aggregator's migrations applied; dropped afterwards."""
    base_url: str = infra.database_url
    name = f"capps_agg_{run_id}"
    admin = await asyncpg.connect(asyncpg_dsn(base_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(base_url)
        url = urlunsplit(parts._replace(path=f"/{name}"))
        # alembic runs its own event loop, which cannot nest inside the test's.
        await asyncio.to_thread(upgrade_head, url)
        yield url
    finally:
        await drop_database(admin, name)
        await admin.close()


@pytest.fixture
async def pg(usage_db: str) -> AsyncIterator["asyncpg.Pool[asyncpg.Record]"]:
    """A pool on the throwaway database."""
    pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(
        asyncpg_dsn(usage_db), min_size=1, max_size=4
    )
    yield pool
    await pool.close()


@pytest.fixture
async def topics(infra: Any, run_id: str) -> AsyncIterator[Topics]:
    """A unique 3-partition requests topic and a DLQ topic, deleted afterwards."""
    bootstrap: str = infra.kafka_bootstrap_servers
    found = Topics(f"capps-agg-test-{run_id}", f"capps-agg-test-{run_id}.dlq", 3)
    specs = [TopicSpec(found.requests, found.partitions), TopicSpec(found.dlq, 1)]
    async with throwaway_topics(bootstrap, specs):
        yield found


@pytest.fixture
def redis_url(infra: Any) -> str:
    """The Redis database of the aggregator's tests."""
    parts = urlsplit(str(infra.redis_url))
    return urlunsplit(parts._replace(path=f"/{AGGREGATOR_TEST_REDIS_DB}"))


@pytest.fixture
async def hot(redis_url: str, run_id: str, topics: Topics) -> AsyncIterator["redis.Redis"]:
    """A Redis client on a complete hot store (marker set); the test's app keys and watermark
    fields are deleted afterwards.

    Every app id of a test starts with `app-{run_id}`, so cleanup touches nothing else.
    """
    client = create_redis(redis_url)
    await client.set(HOT_READY_KEY, "set by the test fixture", nx=True)
    yield client
    keys = [key async for key in client.scan_iter(match=f"capps:usage:app-{run_id}*")]
    if keys:
        await client.delete(*keys)
    fields = [
        field async for field, _ in client.hscan_iter(OFFSETS_KEY, match=f"{topics.requests}:*")
    ]
    if fields:
        await client.hdel(OFFSETS_KEY, *fields)
    await client.aclose()


ProduceEvents = Callable[[list[RequestEvent], int], Awaitable[None]]


@pytest.fixture
def produce(infra: Any, topics: Topics) -> ProduceEvents:
    """Send events (keyed by app, as the gateway does) plus `garbage` undecodable records."""
    bootstrap: str = infra.kafka_bootstrap_servers

    async def send(events: list[RequestEvent], garbage: int = 0) -> None:
        producer = make_producer(bootstrap, "capps-agg-test", infra.kafka_security)
        await producer.start()
        try:
            deliveries = []
            for event in events:
                record = encode_request(event, "test")
                deliveries.append(
                    await producer.send(
                        topics.requests, key=record.key, value=record.value, headers=record.headers
                    )
                )
            deliveries.extend(
                [
                    await producer.send(
                        topics.requests,
                        key=b"garbage-%d" % index,
                        value=b"\xff not an event",
                        headers=GARBAGE_HEADERS,
                    )
                    for index in range(garbage)
                ]
            )
            await asyncio.gather(*deliveries)
        finally:
            await producer.stop()

    return send


ReadTopic = Callable[[str, float], Awaitable[list[ConsumerRecord[bytes, bytes]]]]


@pytest.fixture
def read_topic(infra: Any) -> ReadTopic:
    """Every record of a topic that arrives within `wait_s` (read from the beginning)."""
    bootstrap: str = infra.kafka_bootstrap_servers

    async def read(topic: str, wait_s: float) -> list[ConsumerRecord[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            **infra.kafka_options,
        )
        await consumer.start()
        found: list[ConsumerRecord[bytes, bytes]] = []
        try:
            deadline = asyncio.get_running_loop().time() + wait_s
            while asyncio.get_running_loop().time() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    found.extend(records)
        finally:
            await consumer.stop()
        return found

    return read


MakeEvent = Callable[[str, str, datetime], RequestEvent]


@pytest.fixture
def make_event() -> MakeEvent:
    """Builds a request event of an app at a moment (test modules cannot import conftest)."""
    return _make_event


@pytest.fixture
def recent() -> Callable[[int], datetime]:
    """A moment some seconds before now, UTC."""

    def moment(seconds_ago: int) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=seconds_ago)

    return moment


MakeBatch = Callable[[int, int, list[RequestEvent | None]], PartitionBatch]


@pytest.fixture
def make_batch() -> MakeBatch:
    """A decoded partition batch of events (None = a dead-lettered record) from an offset."""

    def build(partition: int, first: int, events: list[RequestEvent | None]) -> PartitionBatch:
        offsets = list(range(first, first + len(events)))
        return PartitionBatch(
            partition,
            [SourceRecord(offset, None, None) for offset in offsets],
            offsets,
            list(events),
            [event.time.timestamp() if event is not None else 0.0 for event in events],
        )

    return build


@pytest.fixture
def worker_env(  # noqa: PLR0917 - fixtures are named by pytest
    infra: Any, usage_db: str, redis_url: str, topics: Any, tmp_path: Path, run_id: str
) -> dict[str, str]:
    """The environment of a worker on this test's database, Redis, topics and group."""
    return {
        **os.environ,
        "DATABASE_URL": usage_db,
        "REDIS_URL": redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
        "AGGREGATOR_TOPIC": topics.requests,
        "AGGREGATOR_DLQ_TOPIC": topics.dlq,
        "AGGREGATOR_GROUP": f"capps-agg-test-{run_id}",
        "AGGREGATOR_HOST": "127.0.0.1",
        "AGGREGATOR_PORT": str(free_port()),
        "AGGREGATOR_DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "INFO",
        "ENVIRONMENT": "test",
        # faust reads these itself: a killed member leaves the group within 10 s, not 60.
        "BROKER_SESSION_TIMEOUT": "10",
        "BROKER_HEARTBEAT_INTERVAL": "1",
    }


StartWorker = Callable[..., Worker]


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[StartWorker]:
    """Starts worker processes (environment overrides as keywords); stops them afterwards."""
    started: list[Worker] = []

    def start(**overrides: str) -> Worker:
        env = {**worker_env, **overrides}
        if started and "AGGREGATOR_PORT" not in overrides:
            # Each live worker needs its own port and faust data directory.
            env["AGGREGATOR_PORT"] = str(free_port())
            env["AGGREGATOR_DATA_DIR"] = str(tmp_path / f"data-{len(started)}")
        worker = Worker(env, tmp_path / f"worker-{len(started)}.log")
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A redis-server of this test, no persistence, and a way to SIGKILL and restart it."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        with (tmp_path / "redis.log").open("ab") as log:
            processes.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(tmp_path),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def restart() -> None:
        processes[-1].send_signal(signal.SIGKILL)
        processes[-1].wait(10)
        start()

    start()
    yield f"redis://127.0.0.1:{port}/0", restart
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
