"""One RequestEvent per authenticated call, handed to the Kafka producer's batch (no round trip)."""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from capps_events import RequestEvent, encode_request, new_event_id
from capps_gateway import metrics
from capps_gateway.auth import Principal
from capps_kit.kafka import make_producer

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0)


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


class EventPublisher:
    """Owns the producer: starts it (retrying until Kafka answers), publishes, flushes on stop."""

    def __init__(self, bootstrap_servers: str, topic: str, instance_id: str) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = f"capps-gateway-{instance_id}"
        self._producer: AIOKafkaProducer = make_producer(bootstrap_servers, self._client_id)
        self._topic = topic
        self._source = f"//capps/gateway/{instance_id}"
        self._started = False

    @property
    def started(self) -> bool:
        """Whether the producer is connected and knows the topic."""
        return self._started

    async def start_until_ready(self) -> None:
        """Start the producer and fetch the topic's metadata, retrying until Kafka answers.

        Knowing the topic's partitions up front keeps the first calls from waiting on metadata.
        """
        attempt = 0
        while True:
            try:
                await self._producer.start()
                await self._producer.partitions_for(self._topic)
            except Exception as exc:  # noqa: BLE001 - any startup failure is retried, with its reason
                # A half-started producer cannot be started again: discard it, build a new one.
                with contextlib.suppress(Exception):
                    await self._producer.stop()
                self._producer = make_producer(self._bootstrap, self._client_id)
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                log.warning(
                    "Kafka producer not ready, retrying",
                    extra={"reason": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self._started = True
            log.info("Kafka producer started", extra={"topic": self._topic})
            return

    async def publish(self, event: RequestEvent) -> None:
        """Append the event to the producer's batch; delivery is confirmed in the background.

        `send` returns once the record is in the batch, so the call's latency never includes a
        broker round trip; a lost delivery is counted, never raised into the request.
        """
        if not self._started:
            metrics.EVENTS_FAILED.labels("not_started").inc()
            return
        record = encode_request(event, self._source)
        try:
            delivery = await self._producer.send(
                self._topic, value=record.value, key=record.key, headers=record.headers
            )
        except Exception as exc:  # noqa: BLE001 - publishing must never fail the call itself
            metrics.EVENTS_FAILED.labels("enqueue").inc()
            log.warning("request event not enqueued", extra={"reason": repr(exc)})
            return
        delivery.add_done_callback(_count_delivery)

    async def stop(self) -> None:
        """Flush what is batched and close the producer."""
        if self._started:
            await self._producer.flush()
        await self._producer.stop()
        self._started = False


def _count_delivery(delivery: "asyncio.Future[object]") -> None:
    if delivery.cancelled():
        metrics.EVENTS_FAILED.labels("delivery").inc()
        return
    exc = delivery.exception()
    if exc is None:
        metrics.EVENTS_SENT.inc()
    else:
        metrics.EVENTS_FAILED.labels("delivery").inc()
        log.warning("request event not delivered", extra={"reason": repr(exc)})
