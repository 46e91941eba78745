"""Dead-letters refused records as received, plus why in `dlq_reason` and `dlq_detail` headers."""

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from capps_aggregator.rollup import Rejected

REASON_HEADER = "dlq_reason"
DETAIL_HEADER = "dlq_detail"
MAX_DETAIL_BYTES = 1024


def dead_letter_headers(rejected: Rejected) -> list[tuple[str, bytes]]:
    """The record's own headers, then the reason (a short label) and the detail message."""
    detail = rejected.detail.encode(errors="replace")[:MAX_DETAIL_BYTES]
    return [
        *rejected.record.headers,
        (REASON_HEADER, rejected.reason.encode()),
        (DETAIL_HEADER, detail),
    ]


class DeadLetterPublisher:
    """Sends rejects to the DLQ topic and waits until the broker has them."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, rejects: Sequence[Rejected]) -> None:
        """Publish every reject; return once all are acknowledged (acks=all)."""
        deliveries = [
            await self._producer.send(
                self._topic,
                key=rejected.record.key,
                value=rejected.record.value,
                headers=dead_letter_headers(rejected),
            )
            for rejected in rejects
        ]
        await asyncio.gather(*deliveries)
