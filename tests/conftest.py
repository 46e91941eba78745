"""The one fixture layer that hands tests real Kafka, PostgreSQL and Redis.

Where they come from, in order:
1. environment variables (`DATABASE_URL`, `REDIS_URL`, `KAFKA_BOOTSTRAP_SERVERS`), as set by
   CI and by `make up` in `.local/stack.env`;
2. testcontainers, when a Docker engine answers;
3. otherwise the session fails with a message saying how to start them; never a silent skip.
"""

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

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


@dataclass(frozen=True, slots=True)
class Stack:
    """Addresses of the running services, for end-to-end tests."""

    registry_url: str
    gateway_url: str


def _infra_from_env() -> Infra | None:
    names = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    values = [os.environ.get(name) for name in names]
    if not all(values):
        return None
    database_url, redis_url, kafka = (value or "" for value in values)
    return Infra(database_url, redis_url, kafka)


def _docker_answers() -> bool:
    try:
        import docker
    except ImportError:
        return False
    try:
        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means there is no engine to use
        return False
    return True


def _infra_from_containers(stack: ExitStack) -> Infra:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    postgres = stack.enter_context(PostgresContainer("postgres:17-alpine", driver=None))
    redis = stack.enter_context(RedisContainer("redis:7-alpine"))
    kafka = stack.enter_context(KafkaContainer("apache/kafka:4.1.1").with_kraft())
    redis_url = (
        f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(redis.port)}/0"
    )
    return Infra(postgres.get_connection_url(), redis_url, kafka.get_bootstrap_server())


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """Real Kafka, PostgreSQL and Redis, from the environment or from containers."""
    found = _infra_from_env()
    if found is not None:
        yield found
        return
    if not _docker_answers():
        pytest.fail(HOW_TO_START, pytrace=False)
    with ExitStack() as stack:
        yield _infra_from_containers(stack)


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The running registry and gateway; end-to-end tests need `make up` first."""
    registry_url = os.environ.get("REGISTRY_URL")
    gateway_url = os.environ.get("GATEWAY_URL")
    if not registry_url or not gateway_url:
        pytest.fail(
            "end-to-end tests need the running stack: run `make up` and export "
            "`.local/stack.env`, or run `make test`, which does both.",
            pytrace=False,
        )
    return Stack(registry_url.rstrip("/"), gateway_url.rstrip("/"))
