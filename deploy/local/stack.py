"""Starts, checks and stops the whole local stack without Docker (`make up`, `make down`).

Usage (with the venv's python, from anywhere):

    .venv/bin/python deploy/local/stack.py up [PART...]      start what is not running, wait healthy
    .venv/bin/python deploy/local/stack.py down [PART...]    stop what this stack started
    .venv/bin/python deploy/local/stack.py status            one line per part

Parts, in start order: kafka postgres redis prometheus demo-api registry aggregator gateway.
A part already answering on its port but not started by this stack (no live pidfile) is used as
it is and never stopped. Everything the stack writes lives under the state directory: pidfiles in
run/<part>.pid, logs in log/<part>.log, stack.env (URLs for your shell and the tests),
secrets.env (mode 0600), and the data of the servers it runs itself (kafka/, postgres/, redis/,
prometheus/, aggregator/).

Environment (all optional):
    CAPPS_LOCAL_DIR               state directory                      default <repo>/.local
    CAPPS_KAFKA_PORT              Kafka broker listener                default 9092
    CAPPS_KAFKA_CONTROLLER_PORT   Kafka KRaft controller listener      default 9093
    CAPPS_POSTGRES_PORT           PostgreSQL                           default 5432
    CAPPS_REDIS_PORT              Redis                                default 6379
    CAPPS_PROMETHEUS_PORT         Prometheus                           default 9090
    DEMO_API_PORT                 demo platform API (gateway upstream) default 8090
    REGISTRY_PORT                 registry                             default 8080
    AGGREGATOR_PORT               usage aggregator (health, metrics)   default 6066
    GATEWAY_PORT                  gateway proxy                        default 8000
    GATEWAY_ADMIN_PORT            gateway admin (health, metrics)      default 8001
    CAPPS_UP_TIMEOUT              seconds a part may take to get healthy, default 120
    CAPPS_KAFKA_HEAP              Kafka JVM max heap                   default 512m

Services get DATABASE_URL, REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, REGISTRY_URL, TOKEN_ISSUER,
TOKEN_AUDIENCE, GATEWAY_UPSTREAM_URL, CATALOG_PATH, REGISTRY_KEY_ENCRYPTION_KEY,
AGGREGATOR_DATA_DIR, ENVIRONMENT=development and <SERVICE>_HOST / <SERVICE>_PORT.

Standard library only: it must run before anything else is known to work.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
API_AUDIENCE = "capps-api"
LOG_TAIL_LINES = 25


class StackError(Exception):
    """A part could not be started or did not get healthy; the message says where to look."""


# --------------------------------------------------------------------------------------------
# Pure configuration: ports, paths, generated files. Unit-tested in deploy/local/tests.


@dataclass(frozen=True, slots=True)
class Ports:
    """Every port the stack uses, each overridable by one environment variable."""

    kafka: int = 9092
    kafka_controller: int = 9093
    postgres: int = 5432
    redis: int = 6379
    prometheus: int = 9090
    demo_api: int = 8090
    registry: int = 8080
    aggregator: int = 6066
    gateway: int = 8000
    gateway_admin: int = 8001

    ENV: ClassVar[dict[str, str]] = {
        "kafka": "CAPPS_KAFKA_PORT",
        "kafka_controller": "CAPPS_KAFKA_CONTROLLER_PORT",
        "postgres": "CAPPS_POSTGRES_PORT",
        "redis": "CAPPS_REDIS_PORT",
        "prometheus": "CAPPS_PROMETHEUS_PORT",
        "demo_api": "DEMO_API_PORT",
        "registry": "REGISTRY_PORT",
        "aggregator": "AGGREGATOR_PORT",
        "gateway": "GATEWAY_PORT",
        "gateway_admin": "GATEWAY_ADMIN_PORT",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        """Read the overrides; a value that is not a port is refused with its variable's name."""
        values: dict[str, int] = {}
        for attr, var in cls.ENV.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise StackError(f"{var}={raw!r} is not a TCP port (1-65535)")
            values[attr] = int(raw)
        ports = cls(**values)
        numbers = [getattr(ports, attr) for attr in cls.ENV]
        if len(set(numbers)) != len(numbers):
            raise StackError(
                f"two parts share a port: {dict(zip(cls.ENV.values(), numbers, strict=True))}"
            )
        return ports


def urls(ports: Ports) -> dict[str, str]:
    """The addresses clients use, as written to stack.env (shell-sourceable)."""
    return {
        "DATABASE_URL": f"postgresql://capps:capps@{HOST}:{ports.postgres}/capps",
        "REDIS_URL": f"redis://{HOST}:{ports.redis}/0",
        "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{ports.kafka}",
        "REGISTRY_URL": f"http://{HOST}:{ports.registry}",
        "GATEWAY_URL": f"http://{HOST}:{ports.gateway}",
        "GATEWAY_ADMIN_URL": f"http://{HOST}:{ports.gateway_admin}",
        "AGGREGATOR_URL": f"http://{HOST}:{ports.aggregator}",
        "DEMO_API_URL": f"http://{HOST}:{ports.demo_api}",
        "PROMETHEUS_URL": f"http://{HOST}:{ports.prometheus}",
    }


def env_file_text(values: Mapping[str, str]) -> str:
    """KEY=value lines a shell can source (`set -a; . file; set +a`)."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def parse_env_file(text: str) -> dict[str, str]:
    """Read back what env_file_text wrote."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        parts = shlex.split(raw)
        values[key.strip()] = parts[0] if parts else ""
    return values


def service_environment(
    ports: Ports, local_dir: Path, repo: Path, encryption_key: str
) -> dict[str, str]:
    """What every service process gets on top of the caller's environment."""
    found = urls(ports)
    return {
        "DATABASE_URL": found["DATABASE_URL"],
        "REDIS_URL": found["REDIS_URL"],
        "KAFKA_BOOTSTRAP_SERVERS": found["KAFKA_BOOTSTRAP_SERVERS"],
        "REGISTRY_URL": found["REGISTRY_URL"],
        "TOKEN_ISSUER": found["REGISTRY_URL"],
        "TOKEN_AUDIENCE": API_AUDIENCE,
        "GATEWAY_URL": found["GATEWAY_URL"],
        "GATEWAY_UPSTREAM_URL": found["DEMO_API_URL"],
        "CATALOG_PATH": str(repo / "config" / "catalog.yaml"),
        "REGISTRY_KEY_ENCRYPTION_KEY": encryption_key,
        "AGGREGATOR_DATA_DIR": str(local_dir / "aggregator"),
        "ENVIRONMENT": "development",
        "DEMO_API_HOST": HOST,
        "DEMO_API_PORT": str(ports.demo_api),
        "REGISTRY_HOST": HOST,
        "REGISTRY_PORT": str(ports.registry),
        "AGGREGATOR_HOST": HOST,
        "AGGREGATOR_PORT": str(ports.aggregator),
        "GATEWAY_HOST": HOST,
        "GATEWAY_PORT": str(ports.gateway),
        "GATEWAY_ADMIN_HOST": HOST,
        "GATEWAY_ADMIN_PORT": str(ports.gateway_admin),
        # Request events wait here while Kafka is down; kept across restarts, never wiped.
        "GATEWAY_SPOOL_DIR": str(local_dir / "gateway" / "spool"),
        # Logs go to a file: unbuffered output keeps `make logs` and crash tails complete.
        "PYTHONUNBUFFERED": "1",
    }


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

# The scrape targets as written in deploy/prometheus/prometheus.yml, per port attribute.
PROMETHEUS_DEFAULT_TARGETS = {
    "gateway_admin": f"{HOST}:8001",
    "registry": f"{HOST}:8080",
    "aggregator": f"{HOST}:6066",
    "prometheus": f"{HOST}:9090",
}


def prometheus_config(template: str, ports: Ports) -> str:
    """The checked-in config with its scrape targets moved to the ports in use."""
    text = template
    for attr, default in PROMETHEUS_DEFAULT_TARGETS.items():
        text = text.replace(f"'{default}'", f"'{HOST}:{getattr(ports, attr)}'")
    return text


def new_kafka_cluster_id() -> str:
    """A cluster id in Kafka's own format: 16 random bytes, URL-safe base64, no padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's random-uuid avoids ids that start with "-", which read as a CLI option.
        if not cluster_id.startswith("-"):
            return cluster_id


def parse_pidfile(text: str) -> tuple[int, str] | None:
    """`pid start-time` as written by write_pidfile, or None when unreadable."""
    fields = text.split()
    if len(fields) != 2 or not fields[0].isdigit():
        return None
    return int(fields[0]), fields[1]


def start_time_from_stat(stat: str) -> str | None:
    """Process start time (clock ticks since boot) from /proc/<pid>/stat; None for a zombie.

    The start time tells a live process from an unrelated one that reused its pid.
    """
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    if len(rest) < 20 or rest[0] in {"Z", "X"}:
        return None
    return rest[19]


def version_key(name: str) -> tuple[int, ...]:
    """Sort key of a PostgreSQL major version directory name ("15", "9.6")."""
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


PG_ENSURE_ROLE_AND_DB = """\
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'capps') THEN
    CREATE ROLE capps LOGIN PASSWORD 'capps' CREATEDB;
  END IF;
END
$$;
SELECT 'CREATE DATABASE capps OWNER capps'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'capps')\\gexec
"""


# --------------------------------------------------------------------------------------------
# Process and I/O helpers.


def say(message: str = "", *, end: str = "\n") -> None:
    """Progress for the person waiting: flushed at once so it shows under make and in CI."""
    sys.stdout.write(message + end)
    sys.stdout.flush()


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    stdin_text: str | None = None,
    log: IO[bytes] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a one-shot command; its output goes to `log` when given, else is captured."""
    output: int | IO[bytes] = log if log is not None else subprocess.PIPE
    return subprocess.run(  # noqa: S603 - argv lists built by this file, never a shell string
        list(argv),
        input=stdin_text.encode() if stdin_text is not None else None,
        stdin=None if stdin_text is not None else subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        timeout=timeout,
        check=False,
    )


def pid_start_time(pid: int) -> str | None:
    """The start time of a live (non-zombie) process, None when there is none."""
    try:
        return start_time_from_stat(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (from /proc: no signal is sent to find them)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) > 2 and rest[0] not in {"Z", "X"} and rest[2] == str(pgid):
            members.append(int(entry.name))
    return members


def reap_orphans(leader: int, timeout: float = 10.0) -> None:
    """Kill what a dead leader left in its process group (workers, backends) and wait.

    Called only when the leader itself is gone: a pid reused by a new leader stays untouched.
    """
    if pid_start_time(leader) is not None or not group_members(leader):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while group_members(leader) and time.monotonic() < deadline:
        time.sleep(0.1)


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on the port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether GET url answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our URLs
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_ping(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING with PONG (no client library needed)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, indented, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log written)"
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])


def is_root() -> bool:
    """Whether this process may install packages and switch users by itself."""
    return os.geteuid() == 0


# --------------------------------------------------------------------------------------------
# The stack: one Context shared by the parts, one Part class per kind of process.


@dataclass
class Context:
    """Paths, ports and per-run state shared by every part."""

    repo: Path
    local: Path
    ports: Ports
    timeout: float
    base_env: dict[str, str]
    apt_updated: bool = False
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        """Where pidfiles live."""
        return self.local / "run"

    @property
    def log_dir(self) -> Path:
        """Where logs live."""
        return self.local / "log"

    @property
    def venv_bin(self) -> Path:
        """The uv environment's scripts; services run from it."""
        return self.repo / ".venv" / "bin"

    def rel(self, path: Path) -> str:
        """A path as short as possible for messages."""
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    def apt_install(self, packages: Sequence[str], why: str) -> None:
        """Install Debian packages (apt-get update first, once per run)."""
        if not shutil.which("apt-get"):
            raise StackError(f"{why}: install {' '.join(packages)} (no apt-get here)")
        prefix: list[str] = []
        if not is_root():
            if not shutil.which("sudo"):
                raise StackError(f"{why}: install {' '.join(packages)} as root")
            prefix = ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        log = self.log_dir / "apt.log"
        with log.open("ab") as out:
            if not self.apt_updated:
                say(f"  apt-get update (log {self.rel(log)})")
                run([*prefix, "apt-get", "update"], env=env, log=out)
                self.apt_updated = True
            say(f"  {why}: apt-get install {' '.join(packages)}")
            cmd = [*prefix, "apt-get", "install", "-y", "--no-install-recommends", *packages]
            if run(cmd, env=env, log=out).returncode != 0:
                raise StackError(f"apt-get install {' '.join(packages)} failed, see {log}")

    def encryption_key(self) -> str:
        """The registry's key encryption key: generated once, kept mode 0600, never printed."""
        path = self.local / "secrets.env"
        name = "REGISTRY_KEY_ENCRYPTION_KEY"
        if not path.exists():
            text = env_file_text({name: secrets.token_urlsafe(32)})
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
        path.chmod(0o600)
        key = parse_env_file(path.read_text()).get(name, "")
        if not key:
            raise StackError(f"{path} has no {name}; delete the file to generate a new key")
        return key


class Part:
    """One process of the stack: how to tell it runs, start it, wait for it, stop it."""

    name: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    stop_timeout: ClassVar[float] = 15.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- what every part defines
    @property
    def port(self) -> int:
        """The port that tells whether something serves this part already."""
        raise NotImplementedError

    @property
    def address(self) -> str:
        """Where clients reach it, for the final summary."""
        return f"{HOST}:{self.port}"

    def healthy(self) -> bool:
        """The full health check `up` waits for."""
        raise NotImplementedError

    def what(self) -> str:
        """What the health check does, for the waiting line."""
        return f"{self.address}"

    def launch(self) -> None:
        """Prepare and spawn the process (without waiting for it)."""
        raise NotImplementedError

    # -- shared machinery
    @property
    def pidfile(self) -> Path:
        """run/<name>.pid: `pid start-time`."""
        return self.ctx.run_dir / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        """log/<name>.log: everything the process and its one-shot commands print."""
        return self.ctx.log_dir / f"{self.name}.log"

    def our_pid(self) -> int | None:
        """The pid of our live process, removing a stale pidfile on the way."""
        try:
            parsed = parse_pidfile(self.pidfile.read_text())
        except FileNotFoundError:
            return None
        if parsed is not None and pid_start_time(parsed[0]) == parsed[1]:
            return parsed[0]
        if parsed is not None:
            # A killed server may leave workers holding its port or shared memory.
            reap_orphans(parsed[0])
        say(f"  {self.name}: stale pidfile {self.ctx.rel(self.pidfile)} removed")
        self.pidfile.unlink(missing_ok=True)
        return None

    def foreign(self) -> bool:
        """Whether something we did not start serves the port."""
        return port_open(self.port)

    def log_header(self, out: IO[bytes], argv: Sequence[str]) -> None:
        """Mark in the log where a new process or command begins."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        out.write(f"\n===== {stamp} stack.py: {shlex.join(argv)}\n".encode())
        out.flush()

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> None:
        """Start the long-running process in its own session and record its pidfile."""
        with self.log.open("ab") as out:
            self.log_header(out, argv)
            child = subprocess.Popen(  # noqa: S603 - argv lists built by this file
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd or self.ctx.repo,
                user=user,
                group=user,
                extra_groups=[] if user else None,
                # Its own session: make's Ctrl-C does not reach it, `down` stops the group.
                start_new_session=True,
            )
        started = pid_start_time(child.pid) or "0"
        self.pidfile.write_text(f"{child.pid} {started}\n")
        self.ctx.children[self.name] = child

    def run_logged(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        what: str,
    ) -> None:
        """Run a one-shot command into this part's log; fail with its tail when it fails."""
        with self.log.open("ab") as out:
            self.log_header(out, argv)
            result = run(argv, env=env, cwd=cwd or self.ctx.repo, user=user, log=out)
        if result.returncode != 0:
            raise StackError(
                f"{self.name}: {what} failed (exit {result.returncode}); "
                f"see {self.ctx.rel(self.log)}:\n{tail(self.log)}"
            )

    def died(self) -> bool:
        """Whether the process we started is gone (so waiting longer is pointless)."""
        child = self.ctx.children.get(self.name)
        if child is not None:
            return child.poll() is not None
        return self.pidfile.exists() and self.our_pid() is None

    def ensure(self) -> str:
        """Start the part unless it runs; return how it was found."""
        if self.our_pid() is not None:
            return "running"
        if self.foreign():
            return "external"
        say(f"→ {self.name}: starting (log {self.ctx.rel(self.log)})")
        self.launch()
        return "started"

    def wait(self) -> None:
        """Poll the health check until it passes, the process dies, or the timeout ends."""
        self.wait_for(self.healthy, self.what())

    def wait_for(self, check: Callable[[], bool], what: str) -> None:
        """Wait on one check with a visible line; fail pointing at the log."""
        say(f"  waiting for {self.name}: {what} ", end="")
        started = time.monotonic()
        next_dot = started + 2.0
        while not check():
            now = time.monotonic()
            if self.died():
                say("exited")
                raise StackError(
                    f"{self.name} exited during start-up; see {self.ctx.rel(self.log)}:\n"
                    f"{tail(self.log)}"
                )
            if now - started > self.ctx.timeout:
                say("timed out")
                raise StackError(
                    f"{self.name} not healthy after {self.ctx.timeout:g}s ({what}); "
                    f"see {self.ctx.rel(self.log)}:\n{tail(self.log)}"
                )
            if now >= next_dot:
                say(".", end="")
                next_dot = now + 2.0
            time.sleep(0.3)
        say(f"ok ({time.monotonic() - started:.1f}s)")

    def stop(self) -> None:
        """Stop our process: its signal, a grace period, then SIGKILL to its whole group."""
        pid = self.our_pid()
        if pid is None:
            if self.foreign():
                say(f"  {self.name}: not started by this stack, left alone (port {self.port})")
            else:
                say(f"  {self.name}: not running")
            return
        say(f"  {self.name}: stopping pid {pid} ", end="")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)
        deadline = time.monotonic() + self.stop_timeout
        while pid_start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        how = "stopped"
        if pid_start_time(pid) is not None:
            how = "killed after timeout"
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Whatever the process left behind in its session (workers, helpers) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        child = self.ctx.children.pop(self.name, None)
        if child is not None:
            child.wait(timeout=5)  # reap our own child so it leaves no zombie
        self.pidfile.unlink(missing_ok=True)
        say(how)

    def state(self) -> str:
        """One word on who runs it, for `status`."""
        pid = self.our_pid()
        if pid is not None:
            return f"running pid {pid}"
        return "external" if self.foreign() else "stopped"


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


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding a server, if any."""
    root = Path("/usr/lib/postgresql")
    found = (
        [d for d in root.glob("*") if (d / "bin" / "postgres").exists()] if root.exists() else []
    )
    if not found:
        return None
    return max(found, key=lambda d: version_key(d.name)) / "bin"


class Postgres(Part):
    """PostgreSQL: the running server when there is one, else our own cluster in .local."""

    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: SIGTERM ("smart") waits for every client.
    stop_signal = signal.SIGINT
    stop_timeout = 30.0

    @property
    def port(self) -> int:
        return self.ctx.ports.postgres

    @property
    def address(self) -> str:
        return urls(self.ctx.ports)["DATABASE_URL"]

    @property
    def home(self) -> Path:
        """.local/postgres: data and socket directories of our own cluster."""
        return self.ctx.local / "postgres"

    def run_as(self) -> str | None:
        """Root may not run PostgreSQL: switch to the packaged `postgres` user."""
        return "postgres" if is_root() else None

    def psql(self) -> str:
        """A psql binary, installing the client when there is none."""
        found = shutil.which("psql")
        if found:
            return found
        bindir = postgres_bin()
        if bindir is not None and (bindir / "psql").exists():
            return str(bindir / "psql")
        self.ctx.apt_install(["postgresql-client"], "psql is missing")
        return shutil.which("psql") or "psql"

    def capps_can_log_in(self) -> bool:
        """Whether role capps reaches database capps over TCP with its password."""
        env = {**os.environ, "PGPASSWORD": "capps", "PGCONNECT_TIMEOUT": "3"}
        argv = [
            self.psql(),
            "-X",
            "-q",
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-U",
            "capps",
            "-d",
            "capps",
            "-tAc",
            "SELECT 1",
        ]
        return run(argv, env=env, timeout=15).returncode == 0

    def accepting(self) -> bool:
        """Whether the server accepts connections (not starting up or recovering)."""
        isready = shutil.which("pg_isready")
        if isready is None:
            return port_open(self.port)
        argv = [isready, "-q", "-h", HOST, "-p", str(self.port), "-t", "2"]
        return run(argv, timeout=10).returncode == 0

    def healthy(self) -> bool:
        return self.accepting() and self.capps_can_log_in()

    def wait(self) -> None:
        self.wait_for(self.accepting, f"{HOST}:{self.port} accepting connections")
        if not self.capps_can_log_in():
            self.ensure_role_and_database()
        self.wait_for(self.capps_can_log_in, "role capps logs in to database capps")

    def ensure_role_and_database(self) -> None:
        """Create role capps (password capps, CREATEDB) and database capps as the superuser."""
        ours = self.our_pid() is not None
        argv = [
            self.psql(),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-p",
            str(self.port),
            "-d",
            "postgres",
        ]
        if ours:
            argv += ["-h", str(self.socket_dir())]
        user = self.run_as()
        if user is None and not ours:
            raise StackError(
                f"role capps cannot log in to database capps on port {self.port}; create them "
                "as a superuser: CREATE ROLE capps LOGIN PASSWORD 'capps' CREATEDB; "
                "CREATE DATABASE capps OWNER capps;"
            )
        say("  creating role capps and database capps")
        with self.log.open("ab") as out:
            self.log_header(out, argv)
            result = run(argv, user=user, cwd=Path("/"), stdin_text=PG_ENSURE_ROLE_AND_DB, log=out)
        if result.returncode != 0:
            raise StackError(
                f"could not create role/database capps; see {self.ctx.rel(self.log)}:\n"
                f"{tail(self.log)}"
            )

    def socket_dir(self) -> Path:
        """Our cluster's Unix socket directory (short enough for the 107-byte socket path)."""
        preferred = self.home / "socket"
        if len(str(preferred)) < 80:
            return preferred
        return Path("/tmp") / f"capps-pg-{self.port}"  # noqa: S108 - a socket dir, owner-only

    def check_traversable(self, path: Path) -> None:
        """The postgres user must reach the data directory through every parent."""
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                raise StackError(
                    f"the postgres user cannot enter {parent} (mode {oct(mode & 0o777)}); "
                    "set CAPPS_LOCAL_DIR to a directory under /var/tmp or /tmp"
                )

    def clear_stale_locks(self, data: Path) -> None:
        """Remove the lock files of a postmaster that is dead (or an unreaped zombie).

        PostgreSQL itself only asks whether the pid in a lock file exists, and a zombie does;
        orphaned backends go first, since a new postmaster refuses shared memory still attached.
        Both the data directory's and the socket's lock name the postmaster.
        """
        for lock in (data / "postmaster.pid", self.socket_dir() / f".s.PGSQL.{self.port}.lock"):
            try:
                old = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid_start_time(old) is not None:
                continue
            reap_orphans(old)
            say(f"  postgres: removing {self.ctx.rel(lock)} of dead postmaster {old}")
            lock.unlink(missing_ok=True)

    def launch(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            self.ctx.apt_install(["postgresql"], "PostgreSQL is not installed")
            # The package may start its own cluster on the default port: then use that one.
            if self.foreign():
                say(f"  postgres: the packaged server now answers on {self.port}; using it")
                return
            bindir = postgres_bin()
            if bindir is None:
                raise StackError("apt-get installed postgresql but no server binary was found")
        user = self.run_as()
        data = self.home / "data"
        sockets = self.socket_dir()
        for directory in (self.home, data, sockets):
            directory.mkdir(parents=True, exist_ok=True)
        for directory in (data, sockets):
            directory.chmod(0o700)
            if user:
                shutil.chown(directory, user, user)
        if user:
            self.check_traversable(data)
        self.clear_stale_locks(data)
        if not (data / "PG_VERSION").exists():
            say(f"  initdb {self.ctx.rel(data)}")
            self.run_logged(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                ],
                user=user,
                cwd=self.home,
                what="initdb",
            )
        self.spawn(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={HOST}",
                "-c",
                f"unix_socket_directories={sockets}",
            ],
            user=user,
            cwd=self.home,
        )


class Redis(Part):
    """Redis: the running server when there is one, else redis-server with its data in .local."""

    name = "redis"

    @property
    def port(self) -> int:
        return self.ctx.ports.redis

    @property
    def address(self) -> str:
        return urls(self.ctx.ports)["REDIS_URL"]

    def what(self) -> str:
        return f"PING on {HOST}:{self.port}"

    def healthy(self) -> bool:
        return redis_ping(self.port)

    def launch(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            self.ctx.apt_install(["redis-server"], "Redis is not installed")
            if self.foreign():
                say(f"  redis: the packaged server now answers on {self.port}; using it")
                return
            binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        data = self.ctx.local / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.spawn(
            [
                binary,
                "--bind",
                HOST,
                "--port",
                str(self.port),
                "--dir",
                str(data),
                "--daemonize",
                "no",
                "--save",
                "60 1000",
                # Append-only persistence: a restarted Redis comes back with its counters and
                # the completeness marker instead of empty (the aggregator would rebuild it).
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--pidfile",
                str(data / "redis-server.pid"),
            ],
            cwd=data,
        )


class Prometheus(Part):
    """Prometheus from the Debian package, scraping the services' /metrics."""

    name = "prometheus"

    @property
    def port(self) -> int:
        return self.ctx.ports.prometheus

    @property
    def address(self) -> str:
        return urls(self.ctx.ports)["PROMETHEUS_URL"]

    def what(self) -> str:
        return f"{self.address}/-/ready"

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/-/ready")

    def launch(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            self.ctx.apt_install(["prometheus"], "Prometheus is not installed")
            if self.foreign():
                say(
                    f"  prometheus: the packaged server now answers on {self.port}; using it "
                    "(with its own /etc/prometheus config)"
                )
                return
            binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        home = self.ctx.local / "prometheus"
        (home / "data").mkdir(parents=True, exist_ok=True)
        template = (self.ctx.repo / "deploy" / "prometheus" / "prometheus.yml").read_text()
        config = home / "prometheus.yml"
        config.write_text(prometheus_config(template, self.ctx.ports))
        # rule_files in the config are relative to it: the alert rules travel beside it.
        shutil.copyfile(self.ctx.repo / "deploy" / "prometheus" / "alerts.yml", home / "alerts.yml")
        self.spawn(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--storage.tsdb.retention.time=7d",
            ],
            cwd=home,
        )


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How one of our services runs: one-shot preparations, the server command, its health URL.

    Commands name a script of the venv's bin directory first (`python`, `registry`).
    """

    name: str
    port_attr: str
    health_path: str
    serve: tuple[str, ...]
    prepare: tuple[tuple[str, ...], ...] = ()


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("demo-api", "demo_api", "/healthz", ("python", "-m", "capps_demo_api")),
    ServiceSpec(
        "registry", "registry", "/readyz", ("registry", "serve"), prepare=(("registry", "migrate"),)
    ),
    ServiceSpec(
        "aggregator",
        "aggregator",
        "/readyz",
        ("python", "-m", "capps_aggregator", "worker"),
        prepare=(("python", "-m", "capps_aggregator", "migrate"),),
    ),
    ServiceSpec("gateway", "gateway_admin", "/readyz", ("python", "-m", "capps_gateway")),
)


class Service(Part):
    """One of our Python services, run from the venv with the stack's environment."""

    stop_timeout = 20.0

    def __init__(self, ctx: Context, spec: ServiceSpec) -> None:
        super().__init__(ctx)
        self.spec = spec

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.spec.name

    @property
    def port(self) -> int:
        port: int = getattr(self.ctx.ports, self.spec.port_attr)
        return port

    @property
    def health_url(self) -> str:
        """The URL `up` waits on."""
        return f"http://{HOST}:{self.port}{self.spec.health_path}"

    @property
    def address(self) -> str:
        if self.spec.name == "gateway":
            return urls(self.ctx.ports)["GATEWAY_URL"]
        return f"http://{HOST}:{self.port}"

    def what(self) -> str:
        return self.health_url

    def healthy(self) -> bool:
        return http_ok(self.health_url)

    def argv(self, command: tuple[str, ...]) -> list[str]:
        """A command with its first word resolved in the venv."""
        binary = self.ctx.venv_bin / command[0]
        if not binary.exists():
            raise StackError(f"{binary} is missing: run `uv sync` (make up does)")
        return [str(binary), *command[1:]]

    def environment(self) -> dict[str, str]:
        """The caller's environment plus the stack's addresses and secrets."""
        extra = service_environment(
            self.ctx.ports, self.ctx.local, self.ctx.repo, self.ctx.encryption_key()
        )
        return {**self.ctx.base_env, **extra}

    def launch(self) -> None:
        env = self.environment()
        (self.ctx.local / "aggregator").mkdir(parents=True, exist_ok=True)
        for command in self.spec.prepare:
            say(f"  {self.name}: {' '.join(command)}")
            self.run_logged(self.argv(command), env=env, what=" ".join(command))
        self.spawn(self.argv(self.spec.serve), env=env)


def all_parts(ctx: Context) -> list[Part]:
    """Every part in start order; services last, the gateway after the registry's JWKS."""
    infra: list[Part] = [Kafka(ctx), Postgres(ctx), Redis(ctx), Prometheus(ctx)]
    return infra + [Service(ctx, spec) for spec in SERVICES]


def select(parts: list[Part], names: Sequence[str]) -> list[Part]:
    """The parts named on the command line (all when none), refusing unknown names."""
    if not names:
        return parts
    known = {part.name: part for part in parts}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise StackError(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [part for part in parts if part.name in names]


# --------------------------------------------------------------------------------------------
# Commands.


@contextlib.contextmanager
def locked(ctx: Context) -> Iterator[None]:
    """One `up`/`down` at a time per state directory."""
    with (ctx.run_dir / "stack.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another stack.py up/down is running here; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def write_stack_env(ctx: Context) -> Path:
    """stack.env: the addresses for shells, tests and the benchmark."""
    path = ctx.local / "stack.env"
    path.write_text(env_file_text(urls(ctx.ports)))
    return path


def cmd_up(ctx: Context, names: Sequence[str]) -> int:
    """Start what is not running, in order, waiting for each to answer its health check."""
    started = time.monotonic()
    parts = select(all_parts(ctx), names)
    env_path = write_stack_env(ctx)
    ctx.encryption_key()
    infra = [part for part in parts if not isinstance(part, Service)]
    services = [part for part in parts if isinstance(part, Service)]
    # Infrastructure boots in parallel (Kafka is the slow one); services need it, so they
    # start one by one after it, each once the one before answers.
    found = {part.name: part.ensure() for part in infra}
    for part in infra:
        part.wait()
    for part in services:
        found[part.name] = part.ensure()
        part.wait()
    say(f"\nstack is up ({time.monotonic() - started:.1f}s):")
    for part in parts:
        note = {"external": "  (not started by this stack)", "started": "  (started)"}
        say(f"  {part.name:<11} {part.address}{note.get(found[part.name], '')}")
    kafka = next((part for part in parts if isinstance(part, Kafka)), None)
    if kafka is not None and kafka.topics_report:
        say("  topics:     " + kafka.topics_report.strip().replace("\n", "\n              "))
    say(f"  for your shell: set -a; . {ctx.rel(env_path)}; set +a")
    return 0


def cmd_down(ctx: Context, names: Sequence[str]) -> int:
    """Stop, in reverse order, what this stack started; leave everything else alone."""
    for part in reversed(select(all_parts(ctx), names)):
        part.stop()
    return 0


def cmd_status(ctx: Context, names: Sequence[str]) -> int:
    """One line per part: who runs it and whether it answers; exit 1 when any does not."""
    all_ok = True
    for part in select(all_parts(ctx), names):
        state = part.state()
        healthy = part.healthy() if state != "stopped" else False
        all_ok = all_ok and healthy
        mark = "ok" if healthy else "--"
        say(f"  {mark} {part.name:<11} {state:<18} {part.address}  log {ctx.rel(part.log)}")
    return 0 if all_ok else 1


def make_context(env: Mapping[str, str]) -> Context:
    """Read the environment and create the state directories."""
    local = Path(env.get("CAPPS_LOCAL_DIR") or REPO / ".local").resolve()
    raw_timeout = env.get("CAPPS_UP_TIMEOUT", "120")
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise StackError(f"CAPPS_UP_TIMEOUT={raw_timeout!r} is not a number of seconds") from None
    ctx = Context(REPO, local, Ports.from_env(env), timeout, dict(env))
    for directory in (ctx.local, ctx.run_dir, ctx.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    # Other users (the postgres user) must traverse the state directory to reach their data.
    ctx.local.chmod(0o755)
    return ctx


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(
        prog="stack.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("parts", nargs="*", help="limit to these parts (default: all)")
    args = parser.parse_args(argv)
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status}
    try:
        ctx = make_context(os.environ)
        if args.command == "status":
            return cmd_status(ctx, args.parts)
        with locked(ctx):
            return commands[args.command](ctx, args.parts)
    except StackError as exc:
        say(f"\nerror: {exc}")
        if args.command == "up":
            say("what did start keeps running; `make down` stops it")
        return 1
    except KeyboardInterrupt:
        say("\ninterrupted; `make down` stops what was started")
        return 130


if __name__ == "__main__":
    sys.exit(main())
