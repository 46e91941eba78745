"""The compose file's Kafka, run here without Docker: deploy/kafka/compose-broker.sh itself.

The script is what the `kafka` service of docker-compose.yml runs inside apache/kafka; here it
runs on the jars `make up` fetched, through stand-ins for the two Kafka scripts it calls
(kafka-storage.sh, kafka-server-start.sh), on free ports. So the settings compose ships —
SASL/SCRAM on every listener, the admin's credential written at format time — are proven to
start a broker that takes the admin's login and refuses anyone else.
"""

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaConnectionError

from capps_kit.kafka import make_admin
from capps_kit.kafka_security import PLAINTEXT, KafkaSecurity
from capps_stack.kafka import KAFKA_LOG4J2_XML, new_kafka_cluster_id
from tests.deploy.compose_check import REPO
from tests.infra import free_port

pytestmark = pytest.mark.integration

KAFKA_LIB = REPO / ".local" / "kafka" / "lib"
SCRIPT = REPO / "deploy" / "kafka" / "compose-broker.sh"
STARTED_WITHIN_S = 150.0


@dataclass(frozen=True)
class ComposeBroker:
    """The broker compose-broker.sh started, and the admin password it was given."""

    bootstrap: str
    host_listener: str
    admin_password: str
    config: Path

    def login(self, password: str | None = None) -> KafkaSecurity:
        return KafkaSecurity(
            "SASL_PLAINTEXT", "SCRAM-SHA-512", "admin", password or self.admin_password
        )


def stand_in(path: Path, main_class: str, java: str) -> None:
    """A Kafka distribution script that runs its class from the fetched jars."""
    log4j = path.parent.parent / "log4j2.xml"
    log4j.write_text(KAFKA_LOG4J2_XML)
    path.write_text(
        f'#!/bin/sh\nexec "{java}" -Xmx384m -Dlog4j2.configurationFile="{log4j}" '
        f'-cp "{KAFKA_LIB}/*" {main_class} "$@"\n'
    )
    path.chmod(0o755)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeBroker]:
    java = shutil.which("java")
    if not list(KAFKA_LIB.glob("kafka_2.13-*.jar")) or java is None:
        pytest.fail(f"needs the Kafka jars in {KAFKA_LIB} (make up fetches them) and a JDK")
    home = tmp_path_factory.mktemp("compose-kafka")
    (home / "bin").mkdir()
    stand_in(home / "bin" / "kafka-storage.sh", "kafka.tools.StorageTool", java)
    stand_in(home / "bin" / "kafka-server-start.sh", "kafka.Kafka", java)
    port, host_port = free_port(), free_port()
    password = secrets.token_hex(16)
    env = {
        "PATH": "/usr/bin:/bin",
        "KAFKA_HOME": str(home),
        "KAFKA_ADMIN_PASSWORD": password,
        "CLUSTER_ID": new_kafka_cluster_id(),
        "KAFKA_ADVERTISED_HOST": "127.0.0.1",
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_HOST_PORT": str(host_port),
        "KAFKA_DATA_DIR": str(home / "data"),
        "KAFKA_CONFIG_FILE": str(home / "server.properties"),
    }
    with (home / "broker.log").open("wb") as log:
        process = subprocess.Popen(["sh", str(SCRIPT)], env=env, stdout=log, stderr=log)
    try:
        yield ComposeBroker(
            f"127.0.0.1:{port}",
            f"localhost:{host_port}",
            password,
            home / "server.properties",
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def topics_seen(bootstrap: str, security: KafkaSecurity) -> list[str]:
    """List the topics as `security`, retrying while the broker is still starting."""
    async with asyncio.timeout(STARTED_WITHIN_S):
        while True:
            admin = make_admin(bootstrap, "compose-broker-test", security)
            try:
                await admin.start()
                names: list[str] = await admin.list_topics()
            except KafkaConnectionError:
                await asyncio.sleep(1)
            else:
                return names
            finally:
                await admin.close()


async def refused(bootstrap: str, security: KafkaSecurity) -> None:
    """Raise unless the broker refuses this client."""
    admin = make_admin(bootstrap, "compose-broker-test", security)
    try:
        with pytest.raises(KafkaConnectionError):
            await admin.start()
    finally:
        await admin.close()


async def test_the_admin_logs_in_and_creates_a_topic(broker: ComposeBroker) -> None:
    await topics_seen(broker.bootstrap, broker.login())
    admin = make_admin(broker.bootstrap, "compose-broker-test", broker.login())
    await admin.start()
    try:
        await admin.create_topics([NewTopic("compose-check", 1, 1)])
    finally:
        await admin.close()
    assert "compose-check" in await topics_seen(broker.bootstrap, broker.login())
    # The listener compose publishes on the host takes the same login.
    assert "compose-check" in await topics_seen(broker.host_listener, broker.login())


async def test_a_wrong_password_and_an_anonymous_client_are_refused(
    broker: ComposeBroker,
) -> None:
    await topics_seen(broker.bootstrap, broker.login())  # up, so a refusal means refused
    await refused(broker.bootstrap, broker.login(password=secrets.token_hex(16)))
    await refused(broker.bootstrap, PLAINTEXT)


async def test_the_written_settings_are_readable_by_their_owner_only(
    broker: ComposeBroker,
) -> None:
    await topics_seen(broker.bootstrap, broker.login())  # up, so the file is complete
    assert broker.config.stat().st_mode & 0o777 == 0o600
    assert broker.admin_password in broker.config.read_text()
