"""The outbox relay: publishes waiting app changes to Kafka, woken by NOTIFY, polling as fallback.

It runs inside the registry process. Each round claims entries (SKIP LOCKED, so several
registries share the work), takes each app's publishing lock, reads the apps' current rows,
produces one record per app, waits for the broker's acknowledgement and only then deletes the
entries, all in one transaction. A failure rolls back: the entries wait and the next round,
after a backoff, tries again. Nothing here is on the admin API's path.
"""

import asyncio
import contextlib
import enum
import logging
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from capps_events import KafkaRecord
from capps_kit.kafka import make_producer
from capps_kit.kafka_security import PLAINTEXT, KafkaSecurity
from capps_kit.postgres import asyncpg_dsn
from capps_kit.retry import backoff_delay
from capps_registry import metrics
from capps_registry.db import Pool
from capps_registry.outbox import repository
from capps_registry.outbox.records import plan_records, relay_source

log = logging.getLogger(__name__)

# Apps another relay is publishing are retried this soon, a few times, before the poll.
CONTENDED_RETRY_S = 0.05
CONTENDED_RETRIES = 20
# Bounds closing clients and counting the backlog, so neither can stall the relay.
STOP_TIMEOUT_S = 5.0
LISTEN_CONNECT_TIMEOUT_S = 5.0
# Names the LISTEN connection in pg_stat_activity, for operators (and tests) to find it.
LISTENER_APPLICATION_NAME = "capps-registry-outbox-listener"


class _Round(enum.Enum):
    DRAINED = "drained"
    FULL = "full"
    CONTENDED = "contended"


class OutboxRelay:
    """Moves `app_outbox` entries to the apps topic until stopped; see the module docstring."""

    def __init__(
        self,
        pool: Pool,
        *,
        database_url: str,
        bootstrap_servers: str,
        topic: str,
        instance_id: str,
        poll_interval_s: float = 1.0,
        batch_size: int = 500,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._pool = pool
        self._security = security
        self._dsn = asyncpg_dsn(database_url)
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._client_id = f"capps-registry-outbox-{instance_id}"
        self._source = relay_source(instance_id)
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stage = "database"
        self._backlog = (0, 0.0)

    @property
    def backlog(self) -> tuple[int, float]:
        """Entries waiting and the oldest one's age in seconds, as this relay last counted."""
        return self._backlog

    def start(self) -> None:
        """Run the relay in a background task of the current loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def wake(self) -> None:
        """Start a round now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop the task (an open round rolls back, its entries wait) and close the clients."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_listener()
        await self._discard_producer()

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                self._stage = "database"
                await self._ensure_listener()
                self._stage = "kafka"
                await self._ensure_producer()
                await self._drain()
            except Exception as exc:  # noqa: BLE001 - every failure is retried; entries wait
                failures += 1
                delay = backoff_delay(failures)
                metrics.OUTBOX_FAILURES.labels(self._stage).inc()
                log.warning(
                    "outbox relay round failed, retrying",
                    extra={
                        "stage": self._stage,
                        "reason": f"{type(exc).__name__}: {exc}",
                        "retry_in_s": delay,
                    },
                )
                if self._stage == "database":
                    await self._close_listener()
                # The backlog matters most while Kafka is away, so it is counted then too.
                await self._observe_backlog()
                await asyncio.sleep(delay)
                continue
            failures = 0
            await self._observe_backlog()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval_s):
                    await self._wake.wait()

    async def _drain(self) -> None:
        contended = 0
        while True:
            outcome = await self._publish_round()
            if outcome is _Round.DRAINED:
                return
            if outcome is _Round.CONTENDED:
                contended += 1
                if contended > CONTENDED_RETRIES:
                    return
                await asyncio.sleep(CONTENDED_RETRY_S)

    async def _publish_round(self) -> _Round:
        published = 0
        async with self._pool.acquire() as conn, conn.transaction():
            self._stage = "database"
            entries = await repository.claim(conn, self._batch_size)
            if not entries:
                return _Round.DRAINED
            app_ids = list(dict.fromkeys(entry.app_id for entry in entries))
            locked = set(await repository.lock_apps(conn, app_ids))
            mine = [entry for entry in entries if entry.app_id in locked]
            if mine:
                current = await repository.current_apps(conn, sorted(locked))
                records = plan_records(mine, current, self._source)
                self._stage = "kafka"
                await self._send_all(records)
                self._stage = "database"
                await repository.delete_entries(conn, [entry.id for entry in mine])
                published = len(mine)
        metrics.OUTBOX_PUBLISHED.inc(published)
        if published < len(entries):
            return _Round.CONTENDED
        return _Round.FULL if len(entries) == self._batch_size else _Round.DRAINED

    async def _send_all(self, records: list[KafkaRecord]) -> None:
        """Produce the records and wait until the broker acknowledged every one of them.

        The wait has no timeout of its own: the idempotent producer settles every record
        (delivered, or failed for good), so a record given up on here can never land later,
        after a newer state another relay published.
        """
        producer = self._producer
        assert producer is not None
        deliveries: list[asyncio.Future[Any]] = []
        error: BaseException | None = None
        for record in records:
            try:
                deliveries.append(
                    await producer.send(
                        self._topic, value=record.value, key=record.key, headers=record.headers
                    )
                )
            except Exception as exc:  # noqa: BLE001 - settle what was sent, then re-raise
                error = exc
                break
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        error = error or next((r for r in results if isinstance(r, BaseException)), None)
        if error is not None:
            # A producer that failed a delivery is rebuilt rather than trusted again.
            await self._discard_producer()
            raise error

    async def _ensure_producer(self) -> None:
        if self._producer is not None:
            return
        producer = make_producer(self._bootstrap, self._client_id, self._security)
        try:
            await producer.start()
        except BaseException:
            # A half-started producer cannot be started again: close it, build a new one later.
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer
        log.info("outbox relay connected to Kafka", extra={"topic": self._topic})

    async def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await producer.stop()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.warning("Kafka producer did not close cleanly", extra={"reason": repr(exc)})

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._close_listener()
        listener = await asyncpg.connect(
            self._dsn,
            timeout=LISTEN_CONNECT_TIMEOUT_S,
            server_settings={"application_name": LISTENER_APPLICATION_NAME},
        )
        try:
            await listener.add_listener(repository.NOTIFY_CHANNEL, self._on_notify)
        except BaseException:
            await listener.close()
            raise
        self._listener = listener

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None or listener.is_closed():
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await listener.close()
        except Exception:  # noqa: BLE001 - a dead connection is terminated instead
            listener.terminate()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _observe_backlog(self) -> None:
        """Update the backlog gauges; without PostgreSQL they keep the last count."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                waiting, oldest_s = await repository.backlog(self._pool)
        except Exception:  # noqa: BLE001 - the round's own failure was already reported
            return
        self._backlog = (waiting, oldest_s)
        metrics.OUTBOX_BACKLOG.set(waiting)
        metrics.OUTBOX_OLDEST_AGE.set(oldest_s)
