"""The one fixture layer that hands tests real Kafka, PostgreSQL and Redis.

Where they come from, in order:
1. environment variables (`DATABASE_URL`, `REDIS_URL`, `KAFKA_BOOTSTRAP_SERVERS`), as set by
   CI and by `make up` in `.local/stack.env`;
2. testcontainers, when a Docker engine answers;
3. otherwise the session fails with a message saying how to start them; never a silent skip.
"""

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.infra import (
    HOW_TO_START,
    Infra,
    Stack,
    docker_answers,
    infra_from_containers,
    infra_from_env,
    stack_from_env,
)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """Real Kafka, PostgreSQL and Redis, from the environment or from containers."""
    found = infra_from_env()
    if found is not None:
        yield found
        return
    if not docker_answers():
        pytest.fail(HOW_TO_START, pytrace=False)
    with ExitStack() as stack:
        yield infra_from_containers(stack)


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The running registry and gateway; end-to-end tests need `make up` first."""
    found = stack_from_env()
    if found is None:
        pytest.fail(
            "end-to-end tests need the running stack: run `make up` and export "
            "`.local/stack.env`, or run `make test`, which does both.",
            pytrace=False,
        )
    return found
