"""The spooling publisher against a real, throwaway Kafka broker that is killed and restarted.

The broker is our own (jars from .local/kafka/lib, storage formatted like deploy/local/stack.py
does, free ports, a temp dir), so killing it disturbs nobody. Events published while it is
down must not block, must spool, and must reach the topic exactly once when it is back; a
clean stop while it is down must leave the spool on disk for the next publisher to replay.
"""

import asyncio
import importlib.util
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from capps_events import RequestEvent, new_event_id
from capps_gateway.events import SpoolingPublisher
from capps_gateway.spool import Spool

from .conftest import REPO, free_port

pytestmark = pytest.mark.integration

KAFKA_LIB = REPO / ".local" / "kafka" / "lib"
PARTITIONS = 3
N, M1, M2, M3_IN_FLIGHT, M3_SPOOLED = 400, 300, 500, 40, 250


def _stack_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("capps_stack", REPO / "deploy/local/stack.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name while being defined.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Broker:
    """One KRaft broker+controller in a temp dir; `kill` and `start` keep its data."""

    home: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, *args: str) -> list[str]:
        return [shutil.which("java") or "java", "-Xmx384m", "-cp", f"{KAFKA_LIB}/*", *args]

    def start(self) -> None:
        with (self.home / "broker.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.command("kafka.Kafka", str(self.home / "server.properties")),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not list(KAFKA_LIB.glob("kafka_2.13-*.jar")) or shutil.which("java") is None:
        pytest.fail(f"needs the Kafka jars in {KAFKA_LIB} (make up fetches them) and a JDK")
    stack = _stack_module()
    home = tmp_path / "kafka"
    home.mkdir()
    ports = stack.Ports(kafka=free_port(), kafka_controller=free_port())
    (home / "server.properties").write_text(stack.kafka_server_properties(ports, home / "data"))
    found = Broker(home, ports.kafka)
    subprocess.run(
        found.command(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            stack.new_kafka_cluster_id(),
            "-c",
            str(home / "server.properties"),
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    found.start()
    yield found
    if found.process is not None and found.process.poll() is None:
        found.kill()


async def wait_until(predicate: "object", timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def create_topic(bootstrap: str, topic: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        else:
            return
        finally:
            await admin.close()


async def topic_event_ids(bootstrap: str, topic: str) -> list[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        ids: list[str] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                ids.extend(dict(record.headers)["ce_id"].decode() for record in records)
        return ids
    finally:
        await consumer.stop()


def events(count: int) -> list[RequestEvent]:
    now = datetime.now(UTC)
    return [
        RequestEvent(
            id=new_event_id(),
            time=now,
            tenant_id="tenant-spool",
            app_id=f"app-{n % 5}",
            method="GET",
            route="/api/alerts",
            status=200,
            latency_ms=1.0,
            bytes_in=0,
            bytes_out=n,
            request_id=uuid.uuid4().hex,
            gateway="spool-test",
        )
        for n in range(count)
    ]


async def publish_all(publisher: SpoolingPublisher, batch: list[RequestEvent]) -> float:
    """Publish every event; return the seconds it took (the call path's cost)."""
    started = time.perf_counter()
    for event in batch:
        await publisher.publish(event)
    return time.perf_counter() - started


def spooled_ids(directory: Path) -> list[str]:
    spool = Spool(directory)
    return [
        dict(record.headers)["ce_id"].decode()
        for segment in spool.sealed_segments()
        for record in spool.read(segment)[0]
    ]


async def start(publisher: SpoolingPublisher) -> "asyncio.Task[None]":
    task = asyncio.create_task(publisher.start_until_ready())
    await wait_until(task.done, 60, "the producer to start")
    return task


@pytest.mark.timeout(300)
async def test_no_event_is_lost_or_doubled_across_outages_and_a_stop(
    broker: Broker, tmp_path: Path
) -> None:
    topic = f"spool-test-{uuid.uuid4().hex[:8]}"
    await create_topic(broker.bootstrap, topic)
    spool_dir = tmp_path / "spool"
    options = {"spool_dir": spool_dir, "stall_s": 1.0, "flush_timeout_s": 2.0}
    publisher = SpoolingPublisher(broker.bootstrap, topic, "spool-test", **options)  # type: ignore[arg-type]
    await start(publisher)

    before = events(N)
    await publish_all(publisher, before)
    await wait_until(lambda: publisher.unacknowledged == 0, 30, "the first events acknowledged")

    # Outage one: some events strand in the producer, the rest spool; nothing blocks.
    broker.kill()
    during = events(M1)
    assert await publish_all(publisher, during) < 0.5
    await wait_until(lambda: not publisher.healthy, 20, "the outage to be noticed")
    spooled = events(M2)
    assert await publish_all(publisher, spooled) < 0.5
    await wait_until(lambda: publisher.spooled_bytes > 0, 10, "events to spool")
    broker.start()
    await wait_until(
        lambda: (
            publisher.healthy and publisher.spooled_bytes == 0 and publisher.unacknowledged == 0
        ),
        120,
        "the spool to be replayed after the broker came back",
    )

    # Outage two, then a clean stop while the broker is still down.
    broker.kill()
    stranded = events(M3_IN_FLIGHT)
    await publish_all(publisher, stranded)
    await wait_until(lambda: not publisher.healthy, 20, "the second outage to be noticed")
    left = events(M3_SPOOLED)
    await publish_all(publisher, left)
    await publisher.stop()
    on_disk = set(spooled_ids(spool_dir))
    ambiguous = set(spooled_ids(spool_dir / "ambiguous"))
    assert {e.id for e in left} <= on_disk
    # A stranded batch that was sent but never acknowledged is set aside, not replayed.
    assert ambiguous <= {e.id for e in stranded}
    assert on_disk | ambiguous == {e.id for e in stranded + left}
    assert not on_disk & ambiguous

    # A new publisher (a restarted gateway) replays what the old one left.
    broker.start()
    successor = SpoolingPublisher(broker.bootstrap, topic, "spool-test-2", **options)  # type: ignore[arg-type]
    await start(successor)
    await wait_until(lambda: successor.spooled_bytes == 0, 120, "the left spool to be replayed")
    await successor.stop()

    found = await topic_event_ids(broker.bootstrap, topic)
    assert len(found) == len(set(found)), "an event was written twice"
    expected = {e.id for e in before + during + spooled + stranded + left} - ambiguous
    assert set(found) == expected
    assert not spooled_ids(spool_dir)
