"""One batch, end to end: dead-letter the rejects, count in PostgreSQL and Redis at once.

Every step is idempotent (each store keeps its own watermarks), so a failed batch is simply
applied again from the top, and the two stores can be written concurrently: neither's
exactness depends on the other. A store refusing a row because of what one record holds is
narrowed down by bisection to that record, which is dead-lettered; the rest is counted.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import asyncpg
import redis.exceptions as redis_errors
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from capps_aggregator import metrics
from capps_aggregator.rollup import (
    PartitionBatch,
    Rejected,
    RolledPartition,
    UsageRollup,
    roll_partitions,
)
from capps_aggregator.sinks.redis import HotStoreNotReadyError
from capps_kit.retry import backoff_delay

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
# What a store raises about the data of a row (text it cannot hold, a value out of range, a
# constraint): caused by a record, so retrying the same batch fails again forever.
RECORD_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,
)
STORE_REFUSED = "store_refused"


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same batch later can succeed."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


def is_caused_by_a_record(exc: BaseException) -> bool:
    """Whether a store refused a row for what a record holds (bisect, then dead-letter)."""
    return isinstance(exc, RECORD_ERRORS)


class UsageSink(Protocol):
    """A store of the counters with its own per-partition watermarks."""

    async def watermarks(self, partitions: Sequence[int]) -> dict[int, int]:
        """The next offset to apply of each partition."""
        ...

    async def apply(self, parts: Sequence[RolledPartition]) -> UsageRollup:
        """Count what lies above the watermarks and advance them, atomically per partition."""
        ...


class DeadLetterSink(Protocol):
    """Where refused records go."""

    async def publish(self, rejects: Sequence[Rejected]) -> None:
        """Publish and wait until every reject is acknowledged."""
        ...


class HotStoreRepair(Protocol):
    """Rebuilds the hot store from the system of record when it lost data."""

    async def rebuild(self, *, stale: bool = False) -> None:
        """Return once the hot store is complete again (rebuilt here or by another worker).

        `stale` says the hot store is known to differ from PostgreSQL although its marker is
        set (it counted a record PostgreSQL then refused): drop the marker and rebuild.
        """
        ...


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did to each store."""

    records: int
    counted_postgres: int
    counted_redis: int
    skipped_postgres: int
    skipped_redis: int
    dead_lettered: int


T = TypeVar("T")


async def retry_transient(step: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `step` until it succeeds, waiting longer after each transient failure."""
    failures = 0
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_transient(exc):
                raise
            metrics.BATCH_FAILURES.inc()
            failures += 1
            delay = backoff_delay(failures)
            log.warning(
                "write failed; retrying",
                extra={
                    "step": what,
                    "error": f"{type(exc).__name__}: {exc}",
                    "retry_in_s": delay,
                },
            )
            await asyncio.sleep(delay)


class UsageBatchWriter:
    """Applies decoded batches to the DLQ, PostgreSQL and Redis."""

    def __init__(
        self,
        postgres: UsageSink,
        hot: UsageSink,
        dlq: DeadLetterSink,
        repair: HotStoreRepair,
    ) -> None:
        self._postgres = postgres
        self._redis = hot
        self._dlq = dlq
        self._repair = repair

    async def apply(
        self, batches: Sequence[PartitionBatch], rejects: Sequence[Rejected]
    ) -> BatchOutcome:
        """Apply one batch, retrying outages until it is done; never raise for a record."""
        started = time.perf_counter()
        records = sum(len(batch) for batch in batches)
        dead = await retry_transient(lambda: self._dead_letter(rejects), "dead-lettering")
        parts = roll_partitions(batches)
        try:
            in_postgres, in_redis = await self._write(parts)
        except RECORD_ERRORS as exc:
            log.warning(
                "a store refused a row; isolating the record",
                extra={"error": f"{type(exc).__name__}: {exc}"},
            )
            in_postgres, in_redis = UsageRollup(), UsageRollup()
            for batch in batches:
                dead += await self._isolate(batch, in_postgres, in_redis)
            # Redis was written concurrently and may have counted the refused record; a
            # rebuild from PostgreSQL makes it exact again. Rare: validation comes first.
            await self._repair.rebuild(stale=True)
        outcome = BatchOutcome(
            records=records,
            counted_postgres=in_postgres.counted,
            counted_redis=in_redis.counted,
            skipped_postgres=in_postgres.skipped,
            skipped_redis=in_redis.skipped,
            dead_lettered=dead,
        )
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        _observe(outcome)
        return outcome

    async def _dead_letter(self, rejects: Sequence[Rejected]) -> int:
        # Only rejects PostgreSQL has not yet passed, so a replayed batch does not dead-letter
        # them again; they are sent before the watermark moves past them.
        if not rejects:
            return 0
        stored = await self._postgres.watermarks(sorted({r.partition for r in rejects}))
        fresh = [r for r in rejects if r.record.offset >= stored[r.partition]]
        if fresh:
            await self._dlq.publish(fresh)
            for reject in fresh:
                metrics.DEAD_LETTERED.labels(reject.reason).inc()
            log.warning(
                "dead-lettered records",
                extra={"count": len(fresh), "first_reason": fresh[0].detail},
            )
        return len(fresh)

    async def _write(self, parts: Sequence[RolledPartition]) -> tuple[UsageRollup, UsageRollup]:
        """Both stores at once; each retried on outages on its own."""
        results = await asyncio.gather(
            retry_transient(lambda: self._timed("postgres", self._postgres, parts), "postgres"),
            retry_transient(lambda: self._hot(parts), "redis"),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        in_postgres, in_redis = results
        assert isinstance(in_postgres, UsageRollup)
        assert isinstance(in_redis, UsageRollup)
        return in_postgres, in_redis

    async def _hot(self, parts: Sequence[RolledPartition]) -> UsageRollup:
        while True:
            try:
                return await self._timed("redis", self._redis, parts)
            except HotStoreNotReadyError:
                log.warning("the hot store lost data; rebuilding it from PostgreSQL")
                await self._repair.rebuild()

    @staticmethod
    async def _timed(store: str, sink: UsageSink, parts: Sequence[RolledPartition]) -> UsageRollup:
        started = time.perf_counter()
        try:
            return await sink.apply(parts)
        finally:
            metrics.WRITE_SECONDS.labels(store).observe(time.perf_counter() - started)

    async def _isolate(
        self, batch: PartitionBatch, in_postgres: UsageRollup, in_redis: UsageRollup
    ) -> int:
        """Apply `batch` in order, halving around a refused row; dead-letter its record."""
        try:
            pg, hot = await self._write(roll_partitions([batch]))
        except RECORD_ERRORS as exc:
            if len(batch) > 1:
                middle = len(batch) // 2
                left = await self._isolate(batch.slice(0, middle), in_postgres, in_redis)
                right = await self._isolate(batch.slice(middle, len(batch)), in_postgres, in_redis)
                return left + right
            return await self._refused(batch, exc, in_postgres, in_redis)
        _add(in_postgres, pg)
        _add(in_redis, hot)
        return 0

    async def _refused(
        self,
        batch: PartitionBatch,
        exc: BaseException,
        in_postgres: UsageRollup,
        in_redis: UsageRollup,
    ) -> int:
        # One record the store refuses: dead-letter it, then apply it event-less so the
        # watermarks move past it (replays then skip it instead of refusing again).
        record = batch.records[0]
        reject = Rejected(batch.partition, record, STORE_REFUSED, f"{type(exc).__name__}: {exc}")
        dead = await retry_transient(lambda: self._dead_letter([reject]), "dead-lettering")
        batch.events[0] = None
        pg, hot = await self._write(roll_partitions([batch]))
        _add(in_postgres, pg)
        _add(in_redis, hot)
        return dead


def _add(total: UsageRollup, part: UsageRollup) -> None:
    total.counted += part.counted
    total.skipped += part.skipped
    total.next_offsets.update(part.next_offsets)


def _observe(outcome: BatchOutcome) -> None:
    metrics.BATCH_EVENTS.observe(outcome.records)
    metrics.EVENTS_COUNTED.labels("postgres").inc(outcome.counted_postgres)
    metrics.EVENTS_COUNTED.labels("redis").inc(outcome.counted_redis)
    metrics.DUPLICATES_SKIPPED.labels("postgres").inc(outcome.skipped_postgres)
    metrics.DUPLICATES_SKIPPED.labels("redis").inc(outcome.skipped_redis)
