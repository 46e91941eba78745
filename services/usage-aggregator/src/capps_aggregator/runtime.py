"""The composition root: the worker's connections and everything built on them.

The worker, the benchmark and the tests all open the aggregator through `AggregatorRuntime`,
so they run the same writer, sinks, DLQ publisher and hot-store rebuilder.
"""

import asyncio
import logging
from dataclasses import dataclass

import asyncpg
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer

from capps_aggregator.dlq import DeadLetterPublisher
from capps_aggregator.hot_rebuild import HotStoreRebuilder, Progress
from capps_aggregator.pipeline import TRANSIENT_ERRORS, UsageBatchWriter
from capps_aggregator.retention import UsageRetention
from capps_aggregator.settings import AggregatorSettings
from capps_aggregator.sinks.postgres import PostgresUsageSink
from capps_aggregator.sinks.redis import RedisUsageSink
from capps_aggregator.tracing import TracedBatchWriter
from capps_events import REQUESTS_DLQ_TOPIC, TOPICS, TopicSpec
from capps_kit import postgres as kit_postgres
from capps_kit import redis as kit_redis
from capps_kit.kafka import ensure_topics, make_producer
from capps_kit.tracing import open_tracing

log = logging.getLogger(__name__)

OPEN_RETRY_S = 2.0


def dlq_topic_spec(name: str) -> TopicSpec:
    """The DLQ topic's spec from the event contract, under the configured name."""
    contract = next(spec for spec in TOPICS if spec.name == REQUESTS_DLQ_TOPIC)
    return TopicSpec(name, contract.partitions, dict(contract.configs))


@dataclass(slots=True)
class OpenStores:
    """Live connections and the batch writer built on them."""

    pool: "asyncpg.Pool[asyncpg.Record]"
    redis: "redis.Redis"
    producer: AIOKafkaProducer
    postgres: PostgresUsageSink
    hot: RedisUsageSink
    rebuilder: HotStoreRebuilder
    retention: UsageRetention
    writer: UsageBatchWriter


class AggregatorRuntime:
    """Opens the stores once (retrying until they answer) and closes them on the way out."""

    def __init__(self, settings: AggregatorSettings) -> None:
        self.settings = settings
        self.stores: OpenStores | None = None
        # Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; then each batch has its span.
        self.tracing = open_tracing(settings, "capps-usage-aggregator", "capps_aggregator")

    async def open(self) -> OpenStores:
        """Connect to PostgreSQL, Redis and Kafka; wait and retry while any is down."""
        while True:
            try:
                self.stores = await self._connect()
            except TRANSIENT_ERRORS as exc:
                log.warning(
                    "stores not reachable yet; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}"},
                )
                await asyncio.sleep(OPEN_RETRY_S)
            else:
                return self.stores

    async def close(self) -> None:
        """Close whatever is open."""
        stores, self.stores = self.stores, None
        if stores is not None:
            await _close(stores)
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.provider.force_flush)

    async def _connect(self) -> OpenStores:
        settings = self.settings
        security = settings.kafka_security
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            [dlq_topic_spec(settings.aggregator_dlq_topic)],
            security=security,
        )
        pool = await kit_postgres.settings_pool(settings)
        client = kit_redis.create_redis(settings.redis_url)
        producer = make_producer(
            settings.kafka_bootstrap_servers, "capps-usage-aggregator-dlq", security
        )
        try:
            await kit_redis.ping(client)
            await producer.start()
        except BaseException:
            await producer.stop()
            await client.aclose()
            await pool.close()
            raise
        topic = settings.aggregator_topic
        postgres = PostgresUsageSink(pool, topic)
        hot = RedisUsageSink(client, topic)
        rebuilder = HotStoreRebuilder(pool, client)
        dlq = DeadLetterPublisher(producer, settings.aggregator_dlq_topic)
        writer = (
            UsageBatchWriter(postgres, hot, dlq, rebuilder)
            if self.tracing is None
            else TracedBatchWriter(
                self.tracing.tracer, topic, postgres=postgres, hot=hot, dlq=dlq, repair=rebuilder
            )
        )
        retention = UsageRetention(
            pool, settings.usage_minute_retention_days, settings.usage_day_retention_days
        )
        stores = OpenStores(pool, client, producer, postgres, hot, rebuilder, retention, writer)
        try:
            # A Redis that lost its data is made whole before the first batch is counted.
            await rebuilder.rebuild()
        except BaseException:
            await _close(stores)
            raise
        return stores

    async def check_postgres(self) -> None:
        """Readiness: PostgreSQL answers."""
        await kit_postgres.ping(self._open().pool)

    async def check_redis(self) -> None:
        """Readiness: Redis answers."""
        await kit_redis.ping(self._open().redis)

    def _open(self) -> OpenStores:
        if self.stores is None:
            raise RuntimeError("stores are not connected yet")
        return self.stores


async def _close(stores: OpenStores) -> None:
    await stores.producer.stop()
    await stores.redis.aclose()
    await stores.pool.close()


async def rebuild_hot_store(settings: AggregatorSettings, progress: Progress) -> None:
    """`rebuild-redis`: drop the marker (writers pause), rebuild Redis from PostgreSQL."""
    pool = await kit_postgres.settings_pool(settings, max_size=2)
    client = kit_redis.create_redis(settings.redis_url)
    try:
        await HotStoreRebuilder(pool, client, progress).rebuild(stale=True)
    finally:
        await client.aclose()
        await pool.close()


async def expire_usage(settings: AggregatorSettings, progress: Progress) -> None:
    """`retention`: delete expired usage rows now (the worker also does it every hour)."""
    pool = await kit_postgres.settings_pool(settings, max_size=2)
    try:
        retention = UsageRetention(
            pool, settings.usage_minute_retention_days, settings.usage_day_retention_days
        )
        deleted = await retention.run_once()
        if deleted is None:
            progress("retention: another worker is deleting expired rows right now")
        else:
            progress("retention: deleted " + ", ".join(f"{n} {t} rows" for t, n in deleted.items()))
    finally:
        await pool.close()
