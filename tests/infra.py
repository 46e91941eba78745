"""Where the tests' real servers come from: environment, testcontainers, or a clear failure."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from capps_events import TopicSpec
from capps_kit.kafka import ensure_topics, make_admin
from capps_kit.kafka_security import KafkaSecurity
from capps_kit.postgres import asyncpg_dsn
from capps_kit.settings import KafkaSettings

HOW_TO_START = (
    "no Kafka/PostgreSQL/Redis for the tests: run `make up` and export `.local/stack.env` "
    "(`set -a; . .local/stack.env; set +a`), or set DATABASE_URL, REDIS_URL and "
    "KAFKA_BOOTSTRAP_SERVERS, or start a Docker engine for testcontainers. `make test` does "
    "all of this for you."
)


@dataclass(frozen=True, slots=True)
class Infra:
    """Connection settings of the real servers under test."""

    database_url: str
    redis_url: str
    kafka_bootstrap_servers: str
    kafka_security: KafkaSecurity

    @property
    def kafka_options(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client of a test adds to `bootstrap_servers`."""
        return self.kafka_security.client_options()


@dataclass(frozen=True, slots=True)
class Stack:
    """Addresses of the running services, for end-to-end tests."""

    registry_url: str
    gateway_url: str


def free_port() -> int:
    """A local TCP port nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _pgbouncer_binary() -> str:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if not found:
        raise RuntimeError("pgbouncer is not installed: apt-get install pgbouncer (.ci/run does)")
    return found


@contextmanager
def pgbouncer(database_url: str, *, server_connections: int) -> Iterator[str]:
    """PgBouncer in transaction mode in front of one database, with this many server
    connections; yields its URL (same role and password)."""
    target = urlsplit(asyncpg_dsn(database_url))
    database = target.path.lstrip("/")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="capps-pgbouncer-"))
    workdir.chmod(0o755)  # as root it drops to `nobody`, who must read its config
    users, config = workdir / "users.txt", workdir / "pgbouncer.ini"
    users.write_text(f'"{target.username}" ""\n')
    config.write_text(
        f"[databases]\n{database} = host={target.hostname} port={target.port}"
        f" dbname={database} user={target.username} password={target.password}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\npool_mode = transaction\n"
        f"default_pool_size = {server_connections}\nmax_client_conn = 200\n"
    )
    for path in (users, config):
        path.chmod(0o644)
    command = [_pgbouncer_binary(), *(["-u", "nobody"] if os.geteuid() == 0 else []), str(config)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not _listening(port):
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer stopped: {process.communicate()[1].decode()}")
            if time.monotonic() > deadline:
                raise RuntimeError("pgbouncer did not listen within 15 s")
            time.sleep(0.05)
        netloc = f"{target.username}:{target.password}@127.0.0.1:{port}"
        yield target._replace(netloc=netloc).geturl()
    finally:
        process.terminate()
        process.communicate(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_process(
    args: list[str], env: dict[str, str], log_path: Path, cwd: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A process of a test, output to `log_path`; SIGTERM at the end, SIGKILL if it lingers."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=log)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def kafka_security() -> KafkaSecurity:
    """How tests and benchmarks log in to Kafka: the settings in the environment.

    `make up` writes the admin principal's login to stack.env (tests create topics and write
    test records); a test that needs a service's own principal builds it (test_bus_acls.py).
    """
    return KafkaSettings().kafka_security


def infra_from_env() -> Infra | None:
    """The servers named by environment variables, if all three are set."""
    names = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    values = [os.environ.get(name) for name in names]
    if not all(values):
        return None
    database_url, redis_url, kafka = (value or "" for value in values)
    return Infra(database_url, redis_url, kafka, kafka_security())


def docker_answers() -> bool:
    """Whether a Docker engine answers, so testcontainers can run."""
    try:
        import docker
    except ImportError:
        return False
    try:
        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means there is no engine to use
        return False
    return True


def infra_from_containers(stack: ExitStack) -> Infra:
    """Start PostgreSQL, Redis and Kafka (KRaft) containers for the session."""
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    postgres = stack.enter_context(PostgresContainer("postgres:17-alpine", driver=None))
    redis = stack.enter_context(RedisContainer("redis:7-alpine"))
    kafka = stack.enter_context(KafkaContainer("apache/kafka:4.1.1").with_kraft())
    host, port = redis.get_container_host_ip(), redis.get_exposed_port(redis.port)
    return Infra(
        postgres.get_connection_url(),
        f"redis://{host}:{port}/0",
        kafka.get_bootstrap_server(),
        KafkaSecurity(),  # the container's listener is PLAINTEXT
    )


def stack_from_env() -> Stack | None:
    """The running registry and gateway named by REGISTRY_URL and GATEWAY_URL."""
    registry_url = os.environ.get("REGISTRY_URL")
    gateway_url = os.environ.get("GATEWAY_URL")
    if not registry_url or not gateway_url:
        return None
    return Stack(registry_url.rstrip("/"), gateway_url.rstrip("/"))


@asynccontextmanager
async def throwaway_topics(
    bootstrap_servers: str, specs: Sequence[TopicSpec], security: KafkaSecurity | None = None
) -> AsyncIterator[None]:
    """Create topics of one test run only (uniquely named by the caller); delete them after."""
    security = security or kafka_security()
    await ensure_topics(bootstrap_servers, specs, security=security)
    try:
        yield
    finally:
        admin = make_admin(bootstrap_servers, "capps-tests", security)
        await admin.start()
        try:
            await admin.delete_topics([spec.name for spec in specs])
        finally:
            await admin.close()


async def drop_database(admin: "asyncpg.Connection[asyncpg.Record]", name: str) -> None:
    """Drop a throwaway database, its sessions too.

    `WITH (FORCE)` refuses, as a non-superuser, while an autovacuum worker happens to be in the
    database (it belongs to no role the caller is a member of); such a worker leaves within
    moments, so the drop is tried again for a while instead of leaking the database.
    """
    for attempt in range(50):
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)
        else:
            return
