"""Which failures the batch writer retries, and which stop the worker."""

import asyncpg
import pytest
import redis.exceptions as redis_errors
from aiokafka.errors import KafkaConnectionError, NotLeaderForPartitionError, UnknownError

from capps_aggregator.pipeline import is_transient


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError(),
        asyncpg.exceptions.CannotConnectNowError(),
        asyncpg.exceptions.DeadlockDetectedError(),
        asyncpg.exceptions.TooManyConnectionsError(),
        redis_errors.ConnectionError(),
        redis_errors.BusyLoadingError(),
        KafkaConnectionError(),
        NotLeaderForPartitionError(),
    ],
)
def test_outages_are_retried(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.UndefinedTableError(),
        asyncpg.exceptions.UniqueViolationError(),
        redis_errors.ResponseError("WRONGTYPE"),
        UnknownError(),
        ValueError("a bug"),
    ],
)
def test_bugs_and_broken_deployments_are_not(exc: BaseException) -> None:
    assert not is_transient(exc)
