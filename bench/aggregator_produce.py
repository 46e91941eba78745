"""Put a backlog of request events on a topic fast: whole batches per partition, not one send each.

One `send` per event (the producer's per-message path) managed about 7,000 events/s here; a
backlog of millions needs `create_batch`/`send_batch`. Events are the real encoding
(`capps_events.encode_request`), keyed and partitioned by app as the gateway's are (one app's
events stay in one partition, in order).
"""

import asyncio
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from capps_events import KafkaRecord, RequestEvent, encode_request
from capps_events.testing import request_event
from capps_kit.kafka import COMPRESSION
from tests.infra import kafka_security

# The events' times spread over this many seconds before `now`, so they fill ten minutes.
SPREAD_S = 600


def bench_event(index: int, apps: Sequence[str], now: datetime) -> RequestEvent:
    """Event number `index`: apps in turn, times spread over the SPREAD_S seconds before `now`."""
    return request_event(
        time=now - timedelta(seconds=index % SPREAD_S),
        tenant_id="bench",
        app_id=apps[index % len(apps)],
        bytes_out=100,
        request_id=str(index),
        gateway="bench",
    )


def bench_events(count: int, apps: Sequence[str], now: datetime) -> list[RequestEvent]:
    """`count` request events spread over `apps` and the last ten minutes."""
    return [bench_event(index, apps, now) for index in range(count)]


def partition_of(app_id: str, partitions: int) -> int:
    """A stable partition per app (crc32 of the id), so one app's events stay ordered."""
    return zlib.crc32(app_id.encode()) % partitions


async def produce_backlog(
    bootstrap: str,
    topic: str,
    partitions: int,
    count: int,
    event_of: Callable[[int], RequestEvent],
    *,
    progress: Callable[[int], None] = lambda _done: None,
) -> float:
    """Produce events `event_of(0)` .. `event_of(count - 1)`; the seconds it took.

    `progress` gets the number of events handed to the producer so far.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="capps-agg-bench",
        acks=1,
        max_batch_size=512 * 1024,
        compression_type=COMPRESSION,
        **kafka_security().client_options(),
    )
    started = time.perf_counter()
    await producer.start()
    try:
        open_batches: dict[int, BatchBuilder] = {}
        deliveries: list[asyncio.Future[object]] = []
        for index in range(count):
            event = event_of(index)
            record = encode_request(event, "bench")
            partition = partition_of(event.app_id, partitions)
            batch = open_batches.get(partition)
            if batch is None or not _append(batch, record):
                if batch is not None:
                    deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = open_batches[partition] = producer.create_batch()
                _append(batch, record)
            if index % 10_000 == 0:
                progress(index)
                await asyncio.sleep(0)  # let the producer's sender run
        for partition, batch in open_batches.items():
            if batch.record_count():
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*deliveries)
        progress(count)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def _append(batch: BatchBuilder, record: KafkaRecord) -> bool:
    """Add `record` to `batch`; False when the batch is full."""
    added = batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
    return added is not None
