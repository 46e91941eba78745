"""A rig for the publisher's tests: a Kafka broker of the test's own, events, spool readers.

The broker (jars from .local/kafka/lib, storage formatted like deploy/local/stack.py does, free
ports, a temp dir) is killed, paused and restarted without disturbing anyone. It is secured like
the stack's (SASL/SCRAM, ACLs), with an admin principal and password of its own.
"""

import asyncio
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from capps_events import RequestEvent
from capps_events.testing import request_event
from capps_gateway.events import SpoolingPublisher
from capps_gateway.spool import Spool
from capps_kit.kafka import make_admin
from capps_kit.kafka_security import KafkaSecurity
from capps_stack.config import (
    KAFKA_ADMIN,
    KAFKA_SASL_MECHANISM,
    KAFKA_SECURITY_PROTOCOL,
    Ports,
    kafka_client_env,
)
from capps_stack.kafka import kafka_server_properties, new_kafka_cluster_id
from tests.infra import free_port

from .conftest import REPO

PARTITIONS = 3
KAFKA_LIB = REPO / ".local" / "kafka" / "lib"


@dataclass
class Broker:
    """One KRaft broker+controller in a temp dir; `kill` and `start` keep its data."""

    home: Path
    port: int
    admin_password: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def security(self) -> KafkaSecurity:
        """The admin principal's login, for the test's own clients."""
        return KafkaSecurity(
            KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_ADMIN, self.admin_password
        )

    @property
    def client_env(self) -> dict[str, str]:
        """The same login as settings, for a service process pointed at this broker."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            **kafka_client_env(KAFKA_ADMIN, self.admin_password),
        }

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
        self.process.send_signal(signal.SIGCONT)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def pause(self) -> None:
        """Freeze the broker: connections stay open, nothing answers (a hung Kafka)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused broker run on."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def started_broker(tmp_path: Path) -> Iterator[Broker]:
    """A formatted, started broker in `tmp_path`, killed at the end (the `broker` fixture)."""
    if not list(KAFKA_LIB.glob("kafka_2.13-*.jar")) or shutil.which("java") is None:
        pytest.fail(f"needs the Kafka jars in {KAFKA_LIB} (make up fetches them) and a JDK")
    home = tmp_path / "kafka"
    home.mkdir()
    ports = Ports(kafka=free_port(), kafka_controller=free_port())
    password = secrets.token_urlsafe(24)
    (home / "server.properties").write_text(kafka_server_properties(ports, home / "data", password))
    found = Broker(home, ports.kafka, password)
    subprocess.run(
        found.command(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            new_kafka_cluster_id(),
            "-c",
            str(home / "server.properties"),
            "--add-scram",
            f"{KAFKA_SASL_MECHANISM}=[name={KAFKA_ADMIN},password={password}]",
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    found.start()
    yield found
    if found.process is not None and found.process.poll() is None:
        found.kill()


async def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll `predicate` every 0.1 s until it holds; fail naming `what` past the deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def create_topic(broker: Broker, topic: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        admin = make_admin(broker.bootstrap, "publisher-rig", broker.security)
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


async def topic_event_ids(broker: Broker, topic: str) -> list[str]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        **broker.security.client_options(),
    )
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
        request_event(
            time=now, tenant_id="tenant-spool", app_id=f"app-{n % 5}", bytes_out=n, gateway="spool"
        )
        for n in range(count)
    ]


def publish_all(publisher: SpoolingPublisher, batch: list[RequestEvent]) -> None:
    """Publish every event (synchronous: the call path never waits on the broker)."""
    for event in batch:
        publisher.publish(event)


def spooled_ids(directory: Path) -> list[str]:
    spool = Spool(directory)
    return [
        dict(record.headers)["ce_id"].decode()
        for segment in spool.sealed_segments()
        for record in spool.read(segment)[0]
    ]


async def start(publisher: SpoolingPublisher) -> "asyncio.Task[None]":
    task = asyncio.create_task(publisher.start_until_ready())
    # Generous: a JVM broker restarted after SIGKILL recovers its log first, slowly on a busy
    # machine (the controller's events take seconds there).
    await wait_until(task.done, 180, "the producer to start")
    return task
