"""The counting loop: the requests topic in `getmany` batches, one write and one commit each.

Faust's per-event path (an agent, even with `stream.take_events`) measured ~1,500 events/s
here against ~50,000 for the writer alone, so records skip it: an aiokafka consumer in the
group hands whole fetches to the writer. The Kafka commit comes after the write and is only a
resume hint; exactness comes from the watermarks the writer keeps beside the counters.

Batch N is written while batch N+1 is fetched and decoded: the loop keeps one write in
flight and waits for it before handing over the next, so each partition stays in order.
"""

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from capps_aggregator import metrics
from capps_aggregator.pipeline import UsageBatchWriter
from capps_aggregator.rollup import PartitionBatch, Rejected, decode_batch
from capps_aggregator.runtime import AggregatorRuntime

log = logging.getLogger(__name__)

Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]


def by_partition_number(fetched: Fetched) -> dict[int, Sequence[ConsumerRecord[bytes, bytes]]]:
    """One fetch keyed by partition number (the consumer reads one topic)."""
    return {tp.partition: records for tp, records in fetched.items() if records}


def records_behind(highwater: int | None, next_offset: int) -> int | None:
    """How many records of a partition wait behind `next_offset`; None before any fetch."""
    return None if highwater is None else max(highwater - next_offset, 0)


def partitions_past_end(
    watermarks: Mapping[int, int], end_offsets: Mapping[int, int]
) -> dict[int, tuple[int, int]]:
    """(watermark, end offset) of each partition whose watermark lies past the log's end.

    A live topic's end only grows and a watermark never passes it; past it, the topic was
    recreated (its offsets start again at 0) or lost records (an unclean leader election),
    and every record up to the old watermark would be skipped as already counted.
    """
    return {
        partition: (mark, end_offsets[partition])
        for partition, mark in watermarks.items()
        if partition in end_offsets and mark > end_offsets[partition]
    }


def past_end_problem(topic: str, past_end: Mapping[int, tuple[int, int]]) -> str | None:
    """What readiness and the log say about partitions past their end; None when there are none."""
    if not past_end:
        return None
    detail = ", ".join(
        f"partition {partition} watermark {mark} > end {end}"
        for partition, (mark, end) in sorted(past_end.items())
    )
    return (
        f"{topic} is behind the counted offsets ({detail}): the topic was recreated or lost "
        "records, and its records read as already counted; see the README, "
        "'Never recreate capps.requests.v1'"
    )


def commit_offsets(fetched: Fetched) -> dict[TopicPartition, int]:
    """The next offset of each fetched partition: where a restarted consumer resumes."""
    return {tp: records[-1].offset + 1 for tp, records in fetched.items() if records}


class _OnRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the write in flight finish before partitions move to another worker, and checks
    new partitions against their watermarks before any is read.

    Finishing is not needed for exactness (watermarks drop replays) but it spares the next
    owner a replay.
    """

    def __init__(self, counting: "BatchConsumer") -> None:
        self._counting = counting

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:  # noqa: ARG002
        await self._counting.drain()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Held until checked, so a recreated topic's records are never skipped as counted.
        self._counting.hold(assigned)
        await self._counting.check_topic_end()


class BatchConsumer:
    """Consumes the requests topic as group `aggregator_group` and counts each fetch."""

    def __init__(self, runtime: AggregatorRuntime) -> None:
        self._runtime = runtime
        self._consumer: AIOKafkaConsumer | None = None
        # The write in flight and the fetch it writes (committed once the write is done).
        self._in_flight: asyncio.Task[object] | None = None
        self._in_flight_fetch: Fetched = {}
        self.topic_problem: str | None = None
        """Why the topic cannot be counted as it is (partitions past their end), or None."""

    def assigned(self) -> set[TopicPartition]:
        """The partitions this worker owns now (empty before the group assigned any)."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def drain(self) -> None:
        """Wait for the write in flight, if any (its failure surfaces in the loop).

        Only the write: its commit is left to the loop, since committing from inside the
        group's rebalance callback could wait on the rebalance itself.
        """
        task = self._in_flight
        if task is not None:
            await asyncio.wait([task])

    async def run(self) -> None:
        """Count until cancelled; an unfinished batch is neither committed nor lost."""
        settings = self._runtime.settings
        stores = await self._runtime.open()
        writer = stores.writer
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.aggregator_group,
            client_id=f"{settings.aggregator_group}-{settings.instance_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.aggregator_batch_max,
            # Let the broker gather a fuller fetch instead of answering per few records.
            fetch_max_wait_ms=int(settings.aggregator_batch_within_s * 1000),
            **settings.kafka_security.client_options(),
        )
        consumer.subscribe([settings.aggregator_topic], listener=_OnRebalance(self))
        watch = asyncio.gather(
            stores.rebuilder.watch(),
            stores.retention.run_every(settings.usage_retention_every_s),
            self._check_topic_end_every(settings.aggregator_topic_check_every_s),
        )
        self._consumer = consumer
        try:
            await consumer.start()
            timeout_ms = int(settings.aggregator_batch_within_s * 1000)
            while True:
                fetched = await consumer.getmany(
                    timeout_ms=timeout_ms, max_records=settings.aggregator_batch_max
                )
                if not fetched:
                    await self._finish(consumer)
                    continue
                batches, rejects = decode_batch(
                    by_partition_number(fetched), settings.time_window(time.time())
                )
                await self._finish(consumer)
                self._in_flight = asyncio.create_task(
                    _write(writer, consumer, fetched, batches, rejects)
                )
                self._in_flight_fetch = fetched
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            if self._in_flight is not None:
                self._in_flight.cancel()
                await asyncio.gather(self._in_flight, return_exceptions=True)
            self._consumer = None
            await consumer.stop()
            await self._runtime.close()

    def hold(self, partitions: set[TopicPartition]) -> None:
        """Fetch nothing of these partitions until `check_topic_end` resumes them."""
        if self._consumer is not None:
            self._consumer.pause(*partitions)

    async def check_topic_end(self) -> None:
        """Pause the assigned partitions whose watermark lies past their end, resume repaired ones.

        A paused partition is neither read nor committed, so once its offsets are repaired
        (README, 'Never recreate capps.requests.v1') its records are counted from where the
        consumer stood. Watermarks are read before the ends: an end only grows, so a live
        topic never looks behind. A store or broker that does not answer leaves things as
        they are (held partitions stay held) until the next check.
        """
        consumer, stores = self._consumer, self._runtime.stores
        if consumer is None or stores is None:
            return
        assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        if not assigned:
            return
        try:
            marks = await stores.postgres.watermarks([tp.partition for tp in assigned])
            ends = await consumer.end_offsets(assigned)
        except Exception as exc:  # noqa: BLE001 - a hiccup: the next check decides
            log.warning("topic end check failed; checked again soon", extra={"error": repr(exc)})
            return
        past_end = partitions_past_end(marks, {tp.partition: end for tp, end in ends.items()})
        consumer.pause(*[tp for tp in assigned if tp.partition in past_end])
        consumer.resume(*[tp for tp in assigned if tp.partition not in past_end])
        metrics.PARTITIONS_PAST_END.set(len(past_end))
        problem = past_end_problem(self._runtime.settings.aggregator_topic, past_end)
        if problem is not None and problem != self.topic_problem:
            log.error(
                "request topic behind the counted offsets; paused", extra={"problem": problem}
            )
        elif problem is None and self.topic_problem is not None:
            log.warning("request topic offsets repaired; counting resumed")
        self.topic_problem = problem

    async def _check_topic_end_every(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.check_topic_end()

    async def _finish(self, consumer: AIOKafkaConsumer) -> None:
        task, self._in_flight = self._in_flight, None
        if task is None:
            return
        await task  # re-raises what stopped the write
        applied = commit_offsets(self._in_flight_fetch)
        self._in_flight_fetch = {}
        await _commit(consumer, applied)


async def _write(
    writer: UsageBatchWriter,
    consumer: AIOKafkaConsumer,
    fetched: Fetched,
    batches: list[PartitionBatch],
    rejects: list[Rejected],
) -> None:
    await writer.apply(batches, rejects)
    for tp, next_offset in commit_offsets(fetched).items():
        behind = records_behind(consumer.highwater(tp), next_offset)
        if behind is not None:
            metrics.LAG_RECORDS.labels(str(tp.partition)).set(behind)


async def _commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError, KafkaError) as exc:
        # A rebalance took a partition away mid-batch. The batch is applied; the next owner
        # replays it from the older commit and the watermarks drop it.
        log.warning("offset commit failed; replay is harmless", extra={"error": repr(exc)})
