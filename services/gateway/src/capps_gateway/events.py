"""One RequestEvent per authenticated call, delivered to Kafka, spooled to disk when it cannot be.

The call path encodes the event, writes it to the journal (one `write()`, before the answer
is sent: a killed process loses no answered call, see journal.py) and appends it to an
in-memory buffer (no await on the broker).
One background task drains the buffer: it encodes the events and hands them to the producer as
ready-made batches, one per partition, or appends them to the on-disk spool when Kafka is not
answering (producer not started, a batch unacknowledged for `stall_s`, too much in flight, or a
send refused). A second task probes Kafka while it is down and replays the spool once it
answers. Only records that certainly never reached Kafka are spooled: the usage aggregator
dedups by offset, not event id, so a record written twice would be counted twice. Records that
may or may not have been written (sent, never acknowledged) are kept in a separate
`ambiguous/` spool that is never replayed, counted and logged for a person to reconcile.

Nothing here raises into the call path, and the background tasks are supervised (restarted
after an unexpected error). When the spool cannot take records (its size cap, a full disk),
they are dropped and counted (`capps_gateway_events_lost_total`), readiness fails until it can
again, and what was spooled before stays intact for the replay.
"""

import asyncio
import contextlib
import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from capps_events import KafkaRecord, RequestEvent, TraceContext, encode_request, new_event_id
from capps_gateway import metrics
from capps_gateway.auth import Principal
from capps_gateway.journal import Journal, JournalBatch
from capps_gateway.kafka_internals import dequeue, drain_count, queued_batch, stop_sending
from capps_gateway.spool import Spool, loss_reason
from capps_kit.kafka import make_producer
from capps_kit.kafka_security import PLAINTEXT, KafkaSecurity
from capps_kit.retry import READINESS_MAX_DELAY_S, backoff_delay

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.5
REPLAY_CHUNK = 2000
RESTART_DELAY_S = 0.5


def build_event(
    *,
    principal: Principal,
    method: str,
    route: str,
    status: int,
    latency_ms: float,
    bytes_in: int,
    bytes_out: int,
    request_id: str,
    gateway: str,
) -> RequestEvent:
    """The event of one call, stamped now (UTC) with a fresh UUIDv7."""
    return RequestEvent(
        id=new_event_id(),
        time=datetime.now(UTC),
        tenant_id=principal.tenant_id,
        app_id=principal.app_id,
        method=method,
        route=route,
        status=status,
        latency_ms=round(latency_ms, 3),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        request_id=request_id,
        gateway=gateway,
    )


class Outcome(enum.Enum):
    """What a finished delivery means for its records."""

    ACKED = "acked"
    UNSENT = "unsent"
    AMBIGUOUS = "ambiguous"


def delivery_outcome(exc: BaseException | None, drain_count: int) -> Outcome:
    """Classify a batch's delivery from its error and how often the producer took it to send.

    aiokafka 0.14 counts a batch's drains (`MessageBatch.retry_count`, bumped each time the
    sender takes it off the accumulator). Never drained means never sent. A batch that expires
    waiting for a partition leader fails with NotLeaderForPartition / LeaderNotAvailable right
    after its first drain, without being sent; those errors are retriable, so a batch that was
    sent is re-enqueued on them rather than failed. Everything else may have been written: the
    idempotent producer retries sent batches until acknowledged, so a failure after sending
    (a fatal producer error) cannot tell whether an earlier attempt landed.
    """
    if exc is None:
        return Outcome.ACKED
    if drain_count == 0:
        return Outcome.UNSENT
    if drain_count == 1 and isinstance(exc, NotLeaderForPartitionError | LeaderNotAvailableError):
        return Outcome.UNSENT
    return Outcome.AMBIGUOUS


def should_spool(
    *, producer_started: bool, healthy: bool, in_flight: int, incoming: int, in_flight_max: int
) -> bool:
    """Whether records go to the spool instead of the producer.

    A cap on what is in flight keeps the records an outage can strand in the producer (and
    make ambiguous at shutdown) few, however long the outage lasts.
    """
    return not producer_started or not healthy or in_flight + incoming > in_flight_max


def stalled(oldest_sent_at: float | None, now: float, stall_s: float) -> bool:
    """Whether the oldest unacknowledged batch has waited too long: Kafka is not answering."""
    return oldest_sent_at is not None and now - oldest_sent_at > stall_s


def group_by_partition(
    records: Sequence[KafkaRecord], partition_of: dict[bytes, int], partitions: list[int]
) -> dict[int, list[KafkaRecord]]:
    """Records per partition, chosen like the producer's own keyed partitioner (murmur2).

    `partition_of` caches the choice per key (there are few apps); the caller empties it when
    the partition count changes.
    """
    groups: dict[int, list[KafkaRecord]] = {}
    partitioner = DefaultPartitioner()
    for record in records:
        partition = partition_of.get(record.key)
        if partition is None:
            partition = partition_of[record.key] = partitioner(record.key, partitions, partitions)
        groups.setdefault(partition, []).append(record)
    return groups


@dataclass(eq=False, slots=True)
class _Flight:
    """One batch handed to the producer, and what it holds."""

    records: list[KafkaRecord]
    future: "asyncio.Future[Any]"
    batch: Any
    replay: bool
    journal_batch: JournalBatch | None = None
    sent_at: float = field(default_factory=time.monotonic)
    settled: bool = False


class SpoolingPublisher:
    """Owns the producer and the spool: buffers, sends, spools, replays, flushes on stop."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        instance_id: str,
        *,
        spool_dir: Path,
        buffer_max: int = 100_000,
        in_flight_max: int = 20_000,
        stall_s: float = 2.0,
        flush_timeout_s: float = 5.0,
        linger_s: float = 0.005,
        segment_bytes: int = 4 * 1024 * 1024,
        spool_max_bytes: int = 1024 * 1024 * 1024,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._security = security
        self._client_id = f"capps-gateway-{instance_id}"
        self._producer: AIOKafkaProducer = make_producer(
            bootstrap_servers, self._client_id, security
        )
        self._topic = topic
        self._source = f"//capps/gateway/{instance_id}"
        self._buffer_max = buffer_max
        self._in_flight_max = in_flight_max
        self._stall_s = stall_s
        self._flush_timeout_s = flush_timeout_s
        self._linger_s = linger_s
        self._spool = Spool(spool_dir, segment_bytes, spool_max_bytes)
        self._ambiguous = Spool(spool_dir / "ambiguous", segment_bytes, spool_max_bytes)
        self._unhealthy_reason = "not connected yet"
        self._journal = Journal(spool_dir / "journal")
        self._store_recovered()
        self._buffer: list[KafkaRecord] = []
        self._wake = asyncio.Event()
        self._flights: set[_Flight] = set()
        self._in_flight = 0
        self._partition_of: dict[bytes, int] = {}
        self._partitions: list[int] = []
        self._started = False
        self._healthy = False
        self._closing = False
        self._replay_idle = asyncio.Event()
        self._replay_idle.set()
        self._replay_in_chunk = False
        self._tasks: list[asyncio.Task[None]] = []
        metrics.track(metrics.SPOOL_BYTES, lambda: self._spool.size_bytes)
        metrics.track(metrics.SPOOL_SEGMENTS, lambda: self._spool.segment_count)
        metrics.track(metrics.EVENTS_PENDING.labels("buffer"), lambda: len(self._buffer))
        metrics.track(metrics.EVENTS_PENDING.labels("in_flight"), lambda: self._in_flight)
        metrics.track(metrics.KAFKA_HEALTHY, lambda: 1 if self._healthy else 0)

    @property
    def accepting(self) -> bool:
        """Whether events are being taken care of: sent to Kafka or spooled to disk."""
        tasks = self._tasks
        return bool(tasks) and not self._closing and not any(task.done() for task in tasks)

    @property
    def healthy(self) -> bool:
        """Whether events go straight to Kafka (else they spool)."""
        return self._healthy

    @property
    def unacknowledged(self) -> int:
        """Events buffered or handed to the producer and not acknowledged yet."""
        return len(self._buffer) + self._in_flight

    def readiness(self) -> tuple[bool, str]:
        """Whether the gateway may take calls, as far as their events go, and what to say.

        A Kafka that refuses or hangs keeps the gateway ready while the spool takes the events
        (the detail says so); a spool that cannot take them any more makes it not ready.
        """
        if not self.accepting:
            return False, "request event publisher not running"
        refusing = self._spool.refusing
        if refusing is not None:
            return False, f"spool cannot take request events ({refusing}): they are being lost"
        if not self._healthy:
            return True, (
                f"Kafka not answering ({self._unhealthy_reason}); spooling to disk, "
                f"{self._spool.size_bytes} of {self._spool.max_bytes} bytes used"
            )
        return True, "ok"

    @property
    def spooled_bytes(self) -> int:
        """Bytes of events waiting in the spool."""
        return self._spool.size_bytes

    async def start_until_ready(self) -> None:
        """Start draining at once (spooling while Kafka is away), then the producer, retrying.

        Knowing the topic's partitions up front keeps the first batches from waiting on metadata.
        """
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(_supervised("drain", self._drain_forever), name="events-drain"),
                asyncio.create_task(
                    _supervised("replay", self._replay_forever), name="events-replay"
                ),
            ]
        attempt = 0
        while True:
            try:
                await self._producer.start()
                await self._producer.partitions_for(self._topic)
            except Exception as exc:  # noqa: BLE001 - any startup failure is retried, with its reason
                # A half-started producer cannot be started again: discard it, build a new one.
                with contextlib.suppress(Exception):
                    await self._producer.stop()
                self._producer = make_producer(self._bootstrap, self._client_id, self._security)
                attempt += 1
                delay = backoff_delay(attempt, cap_s=READINESS_MAX_DELAY_S)
                log.warning(
                    "Kafka producer not ready, retrying",
                    extra={"reason": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                continue
            self._started = self._healthy = True
            self._unhealthy_reason = ""
            log.info("Kafka producer started", extra={"topic": self._topic})
            return

    def publish(self, event: RequestEvent, context: TraceContext | None = None) -> None:
        """Journal the event and buffer it for the background drain; never waits, never raises.

        Called before the call's answer is sent: once it returns, a killed process loses nothing.
        `context` is the trace context the event carries (tracing.py), None when off.
        """
        record = encode_request(event, self._source, context)
        self._journal.write(record)
        buffer = self._buffer
        buffer.append(record)
        if len(buffer) == 1:
            self._wake.set()
        elif len(buffer) >= self._buffer_max:
            # The drain is far behind: put the backlog on disk rather than grow without bound.
            self._buffer = []
            batch = self._journal.hand_over(len(buffer))
            self._to_spool(buffer)
            self._journal.settle(batch, len(buffer))

    def _store_recovered(self) -> None:
        """Put what a killed predecessor left in the journal into the spools, then reopen it."""
        recovered = self._journal.recovered
        if recovered.unsent:
            self._to_spool(recovered.unsent)
            self._spool.sync()
        if recovered.ambiguous:
            kept = self._ambiguous.append(recovered.ambiguous)
            self._ambiguous.sync()
            metrics.EVENTS_AMBIGUOUS.inc(kept)
            metrics.EVENTS_FAILED.labels("ambiguous").inc(kept)
            _count_lost(len(recovered.ambiguous) - kept, self._ambiguous.refusing)
        self._journal.open()

    async def stop(self) -> None:
        """Send what is buffered (or spool it), wait for acknowledgements up to the flush
        deadline, spool what certainly was not sent, set aside what maybe was, close."""
        self._closing = True
        self._wake.set()
        drain, replay = [*self._tasks, None, None][:2]
        if drain is not None:
            await drain
        # A replay chunk being handed over finishes that step, so each flight is tracked.
        await self._replay_idle.wait()
        if replay is not None and not self._replay_in_chunk:
            replay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replay
        if self._buffer:
            buffered, self._buffer = self._buffer, []
            batch = self._journal.hand_over(len(buffered))
            self._to_spool(buffered)
            self._journal.settle(batch, len(buffered))
        pending = [flight.future for flight in self._flights]
        if pending:
            await asyncio.wait(pending, timeout=self._flush_timeout_s)
        await self._abandon_flights()
        if replay is not None and not replay.done():
            # Its flights are all settled now: it records the chunk as done and returns.
            await replay
        self._spool.close()
        self._ambiguous.close()
        # Every journalled event is acknowledged, spooled or set aside by now.
        self._journal.close(all_settled=not self._flights and not self._buffer)
        if self._started:
            try:
                await asyncio.wait_for(self._producer.stop(), self._flush_timeout_s)
            except TimeoutError:
                log.warning("Kafka producer did not close in time")
        else:
            with contextlib.suppress(Exception):
                await self._producer.stop()
        self._started = self._healthy = False
        self._tasks = []
        if not self._spool.empty:
            log.warning(
                "request events left in the spool for the next start",
                extra={
                    "spool_bytes": self._spool.size_bytes,
                    "spool_dir": str(self._spool.directory),
                },
            )

    async def _drain_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._linger_s and not self._closing:
                # A few milliseconds gather many calls' events into one batch per partition.
                await asyncio.sleep(self._linger_s)
            records, self._buffer = self._buffer, []
            if records:
                # Marked handed over before the producer may send any of them.
                batch = self._journal.hand_over(len(records))
                try:
                    await self._dispatch(records, batch)
                except Exception:
                    log.exception("request events not dispatched; spooled")
                    self._to_spool(records)
                    self._journal.settle(batch, batch.remaining)
            self._check_stall()
            self._spool.sync()
            self._journal.checkpoint()
            if self._closing and not self._buffer:
                return

    async def _dispatch(self, records: list[KafkaRecord], batch: JournalBatch) -> None:
        if should_spool(
            producer_started=self._started,
            healthy=self._healthy,
            in_flight=self._in_flight,
            incoming=len(records),
            in_flight_max=self._in_flight_max,
        ):
            self._to_spool(records)
            self._journal.settle(batch, len(records))
            return
        await self._send(records, replay=False, batch=batch)

    async def _send(
        self, records: list[KafkaRecord], *, replay: bool, batch: JournalBatch | None = None
    ) -> list[_Flight]:
        """Hand records to the producer as one batch per partition; spool what it refuses."""
        producer = self._producer
        known = producer.client.cluster.partitions_for_topic(self._topic)
        partitions = sorted(known or ())
        if not partitions:
            self._mark_unhealthy("topic metadata unknown")
            self._to_spool(records)
            self._journal.settle(batch, len(records))
            return []
        if partitions != self._partitions:
            self._partitions = partitions
            self._partition_of.clear()
        flights: list[_Flight] = []
        refused: list[KafkaRecord] = []
        for partition, group in group_by_partition(records, self._partition_of, partitions).items():
            for batch_records, builder in _build_batches(producer, group):
                if refused:
                    refused.extend(batch_records)
                    continue
                try:
                    # Waits only while this partition's previous batch is still undrained.
                    future = await asyncio.wait_for(
                        producer.send_batch(builder, self._topic, partition=partition),
                        self._stall_s,
                    )
                except Exception as exc:  # noqa: BLE001 - a refused batch was never queued: spool it
                    self._mark_unhealthy(f"send refused: {type(exc).__name__}: {exc}")
                    refused.extend(batch_records)
                    continue
                flight = _Flight(
                    batch_records,
                    future,
                    queued_batch(producer, TopicPartition(self._topic, partition), builder),
                    replay,
                    batch,
                )
                self._flights.add(flight)
                self._in_flight += len(batch_records)
                future.add_done_callback(functools.partial(self._settle, flight))
                flights.append(flight)
        if refused:
            self._to_spool(refused)
            self._journal.settle(batch, len(refused))
        return flights

    def _settle(self, flight: _Flight, future: "asyncio.Future[Any]") -> None:
        # Read the outcome even of a flight settled already (at stop): aiokafka leaves a batch's
        # exception to the caller of its batch API, and asyncio logs any left unread.
        exc = asyncio.CancelledError() if future.cancelled() else future.exception()
        if flight.settled:
            return
        self._finish(flight, delivery_outcome(exc, drain_count(flight.batch)), exc)

    def _finish(self, flight: _Flight, outcome: Outcome, exc: BaseException | None) -> None:
        flight.settled = True
        self._flights.discard(flight)
        self._in_flight -= len(flight.records)
        count = len(flight.records)
        self._journal.settle(flight.journal_batch, count)
        if outcome is Outcome.ACKED:
            (metrics.EVENTS_REPLAYED if flight.replay else metrics.EVENTS_SENT).inc(count)
            return
        if outcome is Outcome.UNSENT:
            self._to_spool(flight.records)
            self._spool.sync()
        else:
            kept = self._ambiguous.append(flight.records)
            self._ambiguous.sync()
            metrics.EVENTS_AMBIGUOUS.inc(kept)
            metrics.EVENTS_FAILED.labels("ambiguous").inc(kept)
            _count_lost(count - kept, self._ambiguous.refusing)
            log.error(
                "request events maybe written, set aside for reconciliation",
                extra={
                    "events": count,
                    "reason": repr(exc),
                    "ambiguous_dir": str(self._ambiguous.directory),
                },
            )
        self._mark_unhealthy(f"delivery failed: {exc!r}")

    def _to_spool(self, records: list[KafkaRecord]) -> None:
        """Spool records; count those the spool cannot take as lost. Never raises."""
        written = self._spool.append(records)
        metrics.EVENTS_SPOOLED.inc(written)
        metrics.EVENTS_FAILED.labels("spooled").inc(written)
        _count_lost(len(records) - written, self._spool.refusing)

    def _check_stall(self) -> None:
        oldest = min((flight.sent_at for flight in self._flights), default=None)
        if self._healthy and stalled(oldest, time.monotonic(), self._stall_s):
            self._mark_unhealthy(f"no acknowledgement for {self._stall_s}s")

    def _mark_unhealthy(self, reason: str) -> None:
        if self._healthy:
            log.warning("Kafka not answering, spooling request events", extra={"reason": reason})
            self._unhealthy_reason = reason
        self._healthy = False

    async def _replay_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(PROBE_INTERVAL_S)
            self._check_stall()
            if not self._started:
                continue
            if not self._healthy:
                if not await self._probe():
                    continue
                self._healthy = True
                log.info("Kafka answers again, sending request events straight to it")
            if not self._spool.empty:
                await self._replay()

    async def _probe(self) -> bool:
        """Whether Kafka answers: fresh metadata, every leader reachable, nothing stuck."""
        if self._flights:
            # Stranded batches are retried by the producer; wait until they are through.
            return False
        client = self._producer.client
        try:
            if not await asyncio.wait_for(client.force_metadata_update(), self._stall_s):
                return False
            partitions = client.cluster.partitions_for_topic(self._topic) or set()
            leaders = {
                client.cluster.leader_for_partition(TopicPartition(self._topic, partition))
                for partition in partitions
            }
            if not partitions or None in leaders or -1 in leaders:
                return False
            for leader in leaders:
                if not await asyncio.wait_for(client.ready(leader), self._stall_s):
                    return False
        except Exception:  # noqa: BLE001 - any probe failure means: not yet
            return False
        return True

    async def _replay(self) -> None:
        """Send sealed segments back, oldest first; a segment goes once all of it is settled.

        One chunk at a time: the `.acked` marker then always names a prefix of the segment.
        Records of a chunk that fail unsent go back to the spool (a newer segment), maybe-written
        ones to the ambiguous spool, so the marker moves past the whole chunk either way.
        """
        self._spool.seal()
        for segment in self._spool.sealed_segments():
            records, done = self._spool.read(segment)
            for start in range(0, len(records), REPLAY_CHUNK):
                if not self._healthy or self._closing:
                    return
                chunk = records[start : start + REPLAY_CHUNK]
                self._replay_in_chunk = True
                self._replay_idle.clear()
                try:
                    flights = await self._send(chunk, replay=True)
                finally:
                    self._replay_idle.set()
                while not all(flight.settled for flight in flights):
                    waiting = [flight.future for flight in flights if not flight.settled]
                    await asyncio.wait(waiting, timeout=PROBE_INTERVAL_S)
                    self._check_stall()
                self._spool.mark_acked(segment, done + start + len(chunk))
                self._replay_in_chunk = False
            self._spool.delete(segment)
            log.info("spool segment replayed", extra={"segment": segment.name})

    async def _abandon_flights(self) -> None:
        """At stop, past the flush deadline: spool batches never sent, set aside the others.

        The never-sent ones are taken out of the producer's queue and its sender is cancelled
        in the same step (no await in between), so nothing spooled here can be sent after.
        Only once the sender has wound down are the remaining batches failed, which lets the
        producer close without waiting for a broker that does not answer.
        """
        if not self._flights:
            return
        producer = self._producer
        for flight in list(self._flights):
            unsent = drain_count(flight.batch) == 0 and dequeue(producer, flight.batch)
            self._finish(
                flight,
                Outcome.UNSENT if unsent else Outcome.AMBIGUOUS,
                KafkaConnectionError("unacknowledged at shutdown"),
            )
        await stop_sending(producer, self._flush_timeout_s)


def _count_lost(count: int, refusing: str | None) -> None:
    """Count records a spool did not take, by the reason it gave."""
    if count <= 0:
        return
    metrics.EVENTS_LOST.labels(loss_reason(refusing)).inc(count)
    metrics.EVENTS_FAILED.labels("lost").inc(count)


async def _supervised(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop until it returns; restart it after any unexpected error.

    A dead drain would leave every later event in memory, unsent and uncounted.
    """
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.TASK_RESTARTS.labels(name).inc()
            log.exception("request event task failed, restarting", extra={"task": name})
            await asyncio.sleep(RESTART_DELAY_S)
        else:
            return


def _build_batches(
    producer: AIOKafkaProducer, records: list[KafkaRecord]
) -> list[tuple[list[KafkaRecord], Any]]:
    """Producer batches holding the records, a new one whenever one is full."""
    built: list[tuple[list[KafkaRecord], Any]] = []
    builder = producer.create_batch()
    held: list[KafkaRecord] = []
    for record in records:
        if (
            builder.append(
                timestamp=None, key=record.key, value=record.value, headers=record.headers
            )
            is None
        ):
            builder.close()
            built.append((held, builder))
            builder = producer.create_batch()
            held = []
            builder.append(
                timestamp=None, key=record.key, value=record.value, headers=record.headers
            )
        held.append(record)
    builder.close()
    built.append((held, builder))
    return built
