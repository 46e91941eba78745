"""The one Kafka producer setup, and idempotent topic creation from the event contract."""

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from capps_events import TOPICS, TopicSpec
from capps_kit.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)


COMPRESSION = "snappy"
"""How every producer of the project compresses its batches (see make_producer)."""


def make_producer(
    bootstrap_servers: str, client_id: str, security: KafkaSecurity
) -> AIOKafkaProducer:
    """An idempotent producer (acks=all) that batches for a few milliseconds.

    Idempotence keeps a retried batch from being written twice; the short linger lets a busy
    gateway send hundreds of events per request to the broker instead of one. Batches are
    snappy-compressed: aiokafka compresses lz4 at level 9 (LZ4 HC), measured at 1.25-1.77 µs
    per event of the gateway's batches (28-150 events) against 0.20-0.31 for snappy, for a
    ratio of 11-14 against 9-10; zstd (0.4-0.8 µs) costs its consumers more to read.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        compression_type=COMPRESSION,
        **security.client_options(),
    )


def make_admin(
    bootstrap_servers: str, client_id: str, security: KafkaSecurity
) -> AIOKafkaAdminClient:
    """An admin client (topics, offsets) authenticated like every other client.

    `security` has no default in this module: a client built without the service's settings
    would be refused by the secured bus, so forgetting them is a type error, not a surprise.
    """
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id=client_id, **security.client_options()
    )


async def ensure_topics(
    bootstrap_servers: str,
    specs: Iterable[TopicSpec] = TOPICS,
    replication_factor: int = 1,
    *,
    security: KafkaSecurity,
) -> list[str]:
    """Create the topics that are missing; return the names created. Safe to run again."""
    admin = make_admin(bootstrap_servers, "capps-topics", security)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=replication_factor,
                topic_configs=dict(spec.configs),
            )
            for spec in missing
        ]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            log.info("topics created concurrently by another process")
        names = [spec.name for spec in missing]
        log.info("created topics", extra={"topics": names})
        return names
    finally:
        await admin.close()
