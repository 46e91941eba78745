"""Apache Kafka from Maven Central, KRaft single node, run with the machine's JDK."""

from __future__ import annotations

import base64
import shutil
import time
import uuid
from pathlib import Path

from .config import HOST, Ports, StackError
from .part import Context, Part
from .process import port_open, run, say


def kafka_server_properties(ports: Ports, data_dir: Path) -> str:
    """A single-node KRaft broker+controller bound to loopback."""
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{HOST}:{ports.kafka_controller}",
        f"listeners=PLAINTEXT://{HOST}:{ports.kafka},CONTROLLER://{HOST}:{ports.kafka_controller}",
        f"advertised.listeners=PLAINTEXT://{HOST}:{ports.kafka}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=1",
        # Topics come from the event contract (capps_kit.topics) with their partitions and
        # policies; a client asking for a missing one must not get a default-made topic.
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # One broker: a new consumer group need not wait for more members to join.
        "group.initial.rebalance.delay.ms=0",
        # After a crash the controller refuses the broker's new registration until the old
        # session expires (default 9 s); on one machine a short session is safe.
        "broker.heartbeat.interval.ms=1000",
        "broker.session.timeout.ms=3000",
    ]
    return "\n".join(lines) + "\n"


KAFKA_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- The broker is chatty at INFO; keep warnings and the one "started" line. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="WARN"/>
    <Logger name="org.apache.kafka" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/>
    <Root level="INFO"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
"""


def new_kafka_cluster_id() -> str:
    """A cluster id in Kafka's own format: 16 random bytes, URL-safe base64, no padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's random-uuid avoids ids that start with "-", which read as a CLI option.
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Part):
    """Apache Kafka from Maven Central, KRaft single node, run with the machine's JDK."""

    name = "kafka"
    stop_timeout = 30.0

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.topics_report = ""

    @property
    def port(self) -> int:
        return self.ctx.ports.kafka

    @property
    def home(self) -> Path:
        """.local/kafka: jars, config, cluster id, data."""
        return self.ctx.local / "kafka"

    def what(self) -> str:
        return f"a client at {self.address} (creating topics)"

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        result = run(
            [
                str(self.ctx.venv_bin / "python"),
                "-m",
                "capps_kit.topics",
                "--bootstrap-servers",
                self.address,
                "--timeout",
                "10",
            ],
            timeout=30,
        )
        self.topics_report = result.stdout.decode(errors="replace")
        return result.returncode == 0

    def fetch_jars(self) -> Path:
        """Download the broker jars once with Maven; a marker tells a complete download."""
        lib = self.home / "lib"
        marker = lib / ".complete"
        if marker.exists():
            return lib
        if not shutil.which("mvn") or not shutil.which("java"):
            raise StackError("kafka needs a JDK (17+) and Maven on PATH: apt-get install maven")
        say(
            "  fetching Apache Kafka jars from Maven Central with mvn (first run only, "
            "can take a few minutes)"
        )
        lib.mkdir(parents=True, exist_ok=True)
        pom = self.ctx.repo / "deploy" / "local" / "kafka" / "pom.xml"
        started = time.monotonic()
        self.run_logged(
            ["mvn", "-q", "-B", "package", "-f", str(pom), f"-Dkafka.lib.dir={lib}"],
            what="mvn fetch of the Kafka jars",
        )
        if not list(lib.glob("kafka_2.13-*.jar")):
            raise StackError(f"mvn finished but no kafka_2.13 jar is in {lib}")
        marker.write_text("ok\n")
        say(f"  fetched in {time.monotonic() - started:.0f}s")
        return lib

    def launch(self) -> None:
        lib = self.fetch_jars()
        data = self.home / "data"
        config = self.home / "server.properties"
        log4j = self.home / "log4j2.xml"
        config.write_text(kafka_server_properties(self.ctx.ports, data))
        log4j.write_text(KAFKA_LOG4J2_XML)
        classpath = f"{lib}/*"
        java = shutil.which("java") or "java"
        if not (data / "meta.properties").exists():
            id_file = self.home / "cluster.id"
            if not id_file.exists():
                id_file.write_text(new_kafka_cluster_id() + "\n")
            cluster_id = id_file.read_text().strip()
            say(f"  formatting Kafka storage (cluster id {cluster_id})")
            data.mkdir(parents=True, exist_ok=True)
            self.run_logged(
                [
                    java,
                    f"-Dlog4j2.configurationFile={log4j}",
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(config),
                ],
                what="kafka storage format",
            )
        heap = self.ctx.base_env.get("CAPPS_KAFKA_HEAP", "512m")
        self.spawn(
            [
                java,
                f"-Xmx{heap}",
                "-Xms128m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ],
            cwd=self.home,
        )
