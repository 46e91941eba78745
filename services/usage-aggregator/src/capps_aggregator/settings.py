"""The aggregator's configuration, read from environment variables."""

from pathlib import Path

from capps_events import REQUESTS_DLQ_TOPIC, REQUESTS_TOPIC
from capps_kit.settings import DatabaseSettings, KafkaSettings, RedisSettings, ServiceSettings


class AggregatorSettings(ServiceSettings, DatabaseSettings, RedisSettings, KafkaSettings):
    """Where to read events from, where to count them, and how big a batch is."""

    aggregator_host: str = "127.0.0.1"
    aggregator_port: int = 6066
    aggregator_topic: str = REQUESTS_TOPIC
    aggregator_dlq_topic: str = REQUESTS_DLQ_TOPIC
    aggregator_group: str = "capps-usage-aggregator"
    aggregator_data_dir: Path = Path(".local/aggregator")
    # One sink call per batch: big enough to amortise a PostgreSQL transaction and a Redis
    # round trip, short enough in time that counters stay about a second behind the gateway.
    aggregator_batch_max: int = 10_000
    aggregator_batch_within_s: float = 0.25
    aggregator_migrate_wait_s: float = 30.0
