"""kafka_internals.stop_sending against aiokafka's real producer queue (no broker involved)."""

import asyncio
import gc
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from capps_gateway.kafka_internals import stop_sending

TP = TopicPartition("capps.requests.v1", 0)


async def test_stopping_fails_queued_batches_without_unread_exceptions() -> None:
    """Each batch failed at stop carries a drain waiter nobody awaits: left unread, asyncio
    logs "Future exception was never retrieved" when it is collected."""
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _loop, context: reported.append(context)
    )
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started
    accumulator = producer._message_accumulator
    futures = []
    for partition in (0, 1):
        builder = producer.create_batch()
        builder.append(key=None, value=b"event", timestamp=None)
        futures.append(await accumulator.add_batch(builder, TP._replace(partition=partition), 1.0))
    await stop_sending(producer, 1.0)
    await asyncio.sleep(0)  # the futures handed out are shields of the batches' own
    for future in futures:  # the publisher reads these through its done callbacks
        assert "gateway stopping" in str(future.exception())
    await producer.stop()
    del futures, accumulator, producer
    gc.collect()
    await asyncio.sleep(0)
    assert [context["message"] for context in reported] == []
