"""Apache Kafka from Maven Central, KRaft single node, run with the machine's JDK."""

from __future__ import annotations

import base64
import hashlib
import shutil
import time
import uuid
from pathlib import Path

from .config import (
    HOST,
    KAFKA_ADMIN,
    KAFKA_SASL_MECHANISM,
    KAFKA_SECURITY_PROTOCOL,
    Ports,
    StackError,
    env_file_text,
    kafka_client_env,
    kafka_password_variable,
)
from .part import Context, Part
from .process import port_open, run, say, tail

BUS_SECURITY_SCRIPT = ("deploy", "kafka", "bus-security.sh")
# What bus-security.sh last applied (a digest of the script and the passwords).
BUS_SECURITY_MARKER = "bus-security.sha256"
KAFKA_TOOLS = {
    "kafka-configs.sh": "kafka.admin.ConfigCommand",
    "kafka-acls.sh": "org.apache.kafka.tools.AclCommand",
}


def kafka_server_properties(ports: Ports, data_dir: Path, admin_password: str) -> str:
    """A single-node KRaft broker+controller bound to loopback, secured like production.

    Clients authenticate with SASL/SCRAM and are held to ACLs (StandardAuthorizer, nothing
    allowed without an ACL); only the admin principal is a super user. The controller listener
    uses SASL/PLAIN, as KRaft controllers cannot check SCRAM credentials themselves.
    """
    jaas_scram = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{KAFKA_ADMIN}" password="{admin_password}";'
    )
    jaas_plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{KAFKA_ADMIN}" password="{admin_password}" '
        f'user_{KAFKA_ADMIN}="{admin_password}";'
    )
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{HOST}:{ports.kafka_controller}",
        f"listeners=SASL_PLAINTEXT://{HOST}:{ports.kafka},CONTROLLER://{HOST}:{ports.kafka_controller}",
        f"advertised.listeners=SASL_PLAINTEXT://{HOST}:{ports.kafka}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=SASL_PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        f"sasl.enabled.mechanisms={KAFKA_SASL_MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={KAFKA_SASL_MECHANISM}",
        f"listener.name.sasl_plaintext.{KAFKA_SASL_MECHANISM.lower()}.sasl.jaas.config={jaas_scram}",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={jaas_plain}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{KAFKA_ADMIN}",
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


def kafka_tool_script(java: str, lib: Path, log4j: Path, main_class: str) -> str:
    """A kafka-configs.sh / kafka-acls.sh stand-in running the tool's class from the jars."""
    return (
        "#!/bin/sh\n"
        f'exec "{java}" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="{log4j}" '
        f'-cp "{lib}/*" {main_class} "$@"\n'
    )


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

    def admin_env(self) -> dict[str, str]:
        """The caller's environment plus the admin principal's client settings."""
        password = self.ctx.kafka_passwords()[kafka_password_variable(KAFKA_ADMIN)]
        return {**self.ctx.base_env, **kafka_client_env(KAFKA_ADMIN, password)}

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
            env=self.admin_env(),
            timeout=30,
        )
        self.topics_report = result.stdout.decode(errors="replace")
        return result.returncode == 0

    def fetch_jars(self) -> Path:
        """Download the broker jars once with Maven; a marker tells a complete download."""
        lib = self.home / "lib"
        marker = lib / ".complete"
        pom = self.ctx.repo / "deploy" / "local" / "kafka" / "pom.xml"
        # The marker names the pom it completed, so a changed pom fetches again.
        wanted = hashlib.sha256(pom.read_bytes()).hexdigest()
        if marker.exists() and marker.read_text().strip() == wanted:
            return lib
        if not shutil.which("mvn") or not shutil.which("java"):
            raise StackError("kafka needs a JDK (17+) and Maven on PATH: apt-get install maven")
        say(
            "  fetching Apache Kafka jars from Maven Central with mvn (first run only, "
            "can take a few minutes)"
        )
        lib.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.run_logged(
            ["mvn", "-q", "-B", "package", "-f", str(pom), f"-Dkafka.lib.dir={lib}"],
            what="mvn fetch of the Kafka jars",
        )
        if not list(lib.glob("kafka_2.13-*.jar")):
            raise StackError(f"mvn finished but no kafka_2.13 jar is in {lib}")
        marker.write_text(wanted + "\n")
        say(f"  fetched in {time.monotonic() - started:.0f}s")
        return lib

    def launch(self) -> None:
        lib = self.fetch_jars()
        data = self.home / "data"
        config = self.home / "server.properties"
        log4j = self.home / "log4j2.xml"
        admin_password = self.ctx.kafka_passwords()[kafka_password_variable(KAFKA_ADMIN)]
        # The file holds the admin password: readable by this user only.
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(kafka_server_properties(self.ctx.ports, data, admin_password))
        log4j.write_text(KAFKA_LOG4J2_XML)
        classpath = f"{lib}/*"
        java = shutil.which("java") or "java"
        self.write_tools(java, lib, log4j)
        formatted = self.home / "scram-admin.sha256"
        admin_digest = hashlib.sha256(admin_password.encode()).hexdigest()
        if (data / "meta.properties").exists() and not (
            formatted.exists() and formatted.read_text().strip() == admin_digest
        ):
            # Storage from before SASL, or made with another admin password: the broker could
            # not authenticate its own admin. Local topic data is disposable; start over.
            say("  Kafka storage lacks this stack's admin SCRAM user: formatting it again")
            shutil.rmtree(data)
        if not (data / "meta.properties").exists():
            id_file = self.home / "cluster.id"
            if not id_file.exists():
                id_file.write_text(new_kafka_cluster_id() + "\n")
            cluster_id = id_file.read_text().strip()
            say(f"  formatting Kafka storage (cluster id {cluster_id}, SCRAM user {KAFKA_ADMIN})")
            data.mkdir(parents=True, exist_ok=True)
            argv = [
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
                # The admin's SCRAM credential must exist before the broker can take requests.
                "--add-scram",
                f"{KAFKA_SASL_MECHANISM}=[name={KAFKA_ADMIN},password={admin_password}]",
            ]
            # run_logged would write the command line, password included, into the log.
            with self.log.open("ab") as out:
                self.log_header(out, [*argv[:-1], "<admin SCRAM credential>"])
                result = run(argv, log=out)
            if result.returncode != 0:
                raise StackError(
                    f"kafka: storage format failed (exit {result.returncode}); "
                    f"see {self.ctx.rel(self.log)}:\n{tail(self.log)}"
                )
            formatted.write_text(admin_digest + "\n")
            # New storage has no users or ACLs yet: bus-security.sh must run again.
            (self.home / BUS_SECURITY_MARKER).unlink(missing_ok=True)
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

    def write_tools(self, java: str, lib: Path, log4j: Path) -> None:
        """kafka-configs.sh and kafka-acls.sh for bus-security.sh, from the fetched jars."""
        tools = self.home / "bin"
        tools.mkdir(exist_ok=True)
        for name, main_class in KAFKA_TOOLS.items():
            script = tools / name
            script.write_text(kafka_tool_script(java, lib, log4j, main_class))
            script.chmod(0o755)

    def wait(self) -> None:
        """Healthy (topics created by the admin), then the services' users and ACLs in place."""
        super().wait()
        self.apply_bus_security()

    def apply_bus_security(self) -> None:
        """Run deploy/kafka/bus-security.sh, as production's job does; skipped when unchanged."""
        script = self.ctx.repo.joinpath(*BUS_SECURITY_SCRIPT)
        passwords = self.ctx.kafka_passwords()
        marker = self.home / BUS_SECURITY_MARKER
        # Formatting the storage removes the marker (launch), so new storage gets them too.
        applied = hashlib.sha256(
            script.read_bytes() + env_file_text(passwords).encode()
        ).hexdigest()
        if marker.exists() and marker.read_text().strip() == applied:
            return
        say("  kafka: creating the services' SCRAM users and ACLs (deploy/kafka/bus-security.sh)")
        started = time.monotonic()
        env = {
            **self.ctx.base_env,
            **passwords,
            "KAFKA_BOOTSTRAP_SERVERS": self.address,
            "KAFKA_ADMIN_USERNAME": KAFKA_ADMIN,
            "KAFKA_SECURITY_PROTOCOL": KAFKA_SECURITY_PROTOCOL,
            "KAFKA_SASL_MECHANISM": KAFKA_SASL_MECHANISM,
            "KAFKA_BIN": str(self.home / "bin"),
        }
        self.run_logged(["sh", str(script)], env=env, what="bus-security.sh")
        marker.write_text(applied + "\n")
        say(f"  users and ACLs in place ({time.monotonic() - started:.0f}s)")
