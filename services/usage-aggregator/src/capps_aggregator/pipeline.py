"""One batch, end to end: decode, dead-letter, count in PostgreSQL, then in Redis.

Every step is idempotent (watermarks), so a failed batch is simply applied again from the top.
PostgreSQL goes first because it is the system of record; Redis catches up by its own
watermark if the process dies between the two.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import redis.exceptions as redis_errors
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from capps_aggregator import metrics
from capps_aggregator.dlq import DeadLetterPublisher
from capps_aggregator.rollup import SourceRecord, decode_batch
from capps_aggregator.sinks.postgres import PostgresUsageSink
from capps_aggregator.sinks.redis import RedisUsageSink

log = logging.getLogger(__name__)

# What a store or broker outage raises. Anything else (a missing table, a script error) is a
# bug or a broken deployment: retrying cannot fix it, so it stops the worker for all to see.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, restart, "cannot connect now"
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica during failover
    KafkaConnectionError,
    KafkaTimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same batch later can succeed."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


RETRY_FIRST_DELAY_S = 0.2
RETRY_MAX_DELAY_S = 10.0


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did to each store."""

    records: int
    counted_postgres: int
    counted_redis: int
    skipped_postgres: int
    skipped_redis: int
    dead_lettered: int


class UsageBatchWriter:
    """Applies batches of consumed records to the DLQ, PostgreSQL and Redis."""

    def __init__(
        self, postgres: PostgresUsageSink, hot: RedisUsageSink, dlq: DeadLetterPublisher
    ) -> None:
        self._postgres = postgres
        self._redis = hot
        self._dlq = dlq

    async def apply(self, records: Sequence[SourceRecord]) -> BatchOutcome:
        """Apply one batch, retrying store and broker failures until it is done."""
        delay = RETRY_FIRST_DELAY_S
        while True:
            try:
                return await self.apply_once(records)
            except Exception as exc:
                metrics.BATCH_FAILURES.inc()
                if not is_transient(exc):
                    raise
                log.warning(
                    "batch failed; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY_S)

    async def apply_once(self, records: Sequence[SourceRecord]) -> BatchOutcome:
        """Apply one batch once; raise on any failure (a retry is safe)."""
        started = time.perf_counter()
        events, rejects = decode_batch(records)
        if rejects:
            # Only rejects PostgreSQL has not yet passed, so a replayed batch does not
            # dead-letter them again; they are sent before the watermark moves past them.
            stored = await self._postgres.watermarks(sorted({r.record.partition for r in rejects}))
            rejects = [r for r in rejects if r.record.offset >= stored[r.record.partition]]
            if rejects:
                await self._dlq.publish(rejects)
                log.warning(
                    "dead-lettered undecodable records",
                    extra={"count": len(rejects), "first_reason": rejects[0].reason},
                )
        in_postgres = await self._postgres.apply(events)
        in_redis = await self._redis.apply(events)
        outcome = BatchOutcome(
            records=len(records),
            counted_postgres=in_postgres.counted,
            counted_redis=in_redis.counted,
            skipped_postgres=in_postgres.skipped,
            skipped_redis=in_redis.skipped,
            dead_lettered=len(rejects),
        )
        _observe(outcome, time.perf_counter() - started)
        return outcome


def _observe(outcome: BatchOutcome, seconds: float) -> None:
    metrics.BATCH_SECONDS.observe(seconds)
    metrics.BATCH_EVENTS.observe(outcome.records)
    metrics.EVENTS_COUNTED.labels("postgres").inc(outcome.counted_postgres)
    metrics.EVENTS_COUNTED.labels("redis").inc(outcome.counted_redis)
    metrics.DUPLICATES_SKIPPED.labels("postgres").inc(outcome.skipped_postgres)
    metrics.DUPLICATES_SKIPPED.labels("redis").inc(outcome.skipped_redis)
    metrics.DEAD_LETTERED.inc(outcome.dead_lettered)
