"""Every use of aiokafka's private internals, in one place (aiokafka is pinned to 0.14.x).

The publisher needs three things aiokafka keeps private: the producer's own batch object for a
batch it queued (its drain count tells a never-sent batch from a sent one), taking a never-sent
batch back out of the queue at shutdown, and stopping the sender so a broker that does not
answer cannot hold the shutdown. On an aiokafka upgrade, this file is the one to re-check
(`producer.py`, `producer/message_accumulator.py`, `producer/sender.py` of aiokafka).
"""

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import TopicPartition

UNKNOWN_DRAINS = 1_000_000
"""The drain count of a batch that could not be found: counts as sent (ambiguous)."""


def queued_batch(producer: AIOKafkaProducer, tp: TopicPartition, builder: Any) -> Any:
    """The producer's own batch object wrapping `builder`, just queued by `send_batch`."""
    accumulator = getattr(producer, "_message_accumulator", None)
    queued = list(getattr(accumulator, "_batches", {}).get(tp, ()))
    # The sender may have taken it already (send_batch ran in its own task under wait_for).
    queued += list(getattr(accumulator, "_pending_batches", ()))
    for batch in queued:
        if getattr(batch, "_builder", None) is builder:
            return batch
    return None


def drain_count(batch: Any) -> int:
    """How often the producer took the batch to send (`MessageBatch.retry_count`)."""
    if batch is None:
        return UNKNOWN_DRAINS
    count: int = batch.retry_count
    return count


def dequeue(producer: AIOKafkaProducer, batch: Any) -> bool:
    """Take a never-drained batch out of the producer's queue; whether it was there."""
    accumulator = getattr(producer, "_message_accumulator", None)
    queued = getattr(accumulator, "_batches", {}).get(batch.tp)
    if not queued or batch not in queued:
        return False
    queued.remove(batch)
    if not queued:
        del accumulator._batches[batch.tp]  # type: ignore[union-attr]
    return True


async def stop_sending(producer: AIOKafkaProducer, timeout_s: float) -> None:
    """Cancel the producer's sender, then fail what is still queued, so `stop` cannot hang."""
    accumulator = getattr(producer, "_message_accumulator", None)
    sender = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if sender is not None and not sender.done():
        sender.cancel()
        await asyncio.wait({sender}, timeout=timeout_s)
    if accumulator is not None and (sender is None or sender.done()):
        _fail_all(accumulator, KafkaConnectionError("gateway stopping"))


def _fail_all(accumulator: Any, error: Exception) -> None:
    """Fail every queued batch, and read back each one's drain waiter: aiokafka fails it too,
    nobody awaits it at shutdown, and asyncio logs an unread exception when it is collected."""
    batches = [batch for queued in accumulator._batches.values() for batch in queued]
    batches += list(accumulator._pending_batches)
    accumulator.fail_all(error)
    for batch in batches:
        waiter = getattr(batch, "_drain_waiter", None)
        if waiter is not None and waiter.done() and not waiter.cancelled():
            waiter.exception()
