"""The aggregator's configuration, read from environment variables."""

from pathlib import Path

from pydantic import model_validator

from capps_events import REQUESTS_DLQ_TOPIC, REQUESTS_TOPIC, TimeWindow
from capps_kit.settings import DatabaseSettings, KafkaSettings, RedisSettings, ServiceSettings

SECONDS_PER_DAY = 86_400


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
    # How often the worker compares its stored watermarks with the topic's end offsets: a
    # watermark past the end means the topic was recreated under the usage database.
    aggregator_topic_check_every_s: float = 30.0
    # Retention of the PostgreSQL usage rows (usage_route_day follows the day rows).
    usage_minute_retention_days: int = 14
    usage_day_retention_days: int = 400
    usage_retention_every_s: float = 3600.0
    # Event times accepted. Late events are normal (a gateway's spool replays calls after an
    # outage), so the past edge reaches as far back as day rows are kept; the future edge
    # allows clock skew only, so no event can pin last_seen or a future bucket.
    aggregator_event_max_age_days: int = 400
    aggregator_event_max_skew_s: float = 300.0

    @model_validator(mode="after")
    def _window_covers_retention(self) -> "AggregatorSettings":
        if self.aggregator_event_max_age_days < self.usage_day_retention_days:
            raise ValueError(
                "AGGREGATOR_EVENT_MAX_AGE_DAYS must reach at least USAGE_DAY_RETENTION_DAYS back"
            )
        if not 0 <= self.aggregator_event_max_skew_s <= 3600:
            raise ValueError("AGGREGATOR_EVENT_MAX_SKEW_S must be within 0..3600 (clock skew)")
        if self.usage_minute_retention_days < 2 or self.usage_day_retention_days < 35:
            raise ValueError(
                "minute rows are kept at least 2 days and day rows at least 35 (the hot store "
                "is rebuilt from them)"
            )
        return self

    def time_window(self, now_s: float) -> TimeWindow:
        """The event times accepted at `now_s` (epoch seconds)."""
        return TimeWindow.around(
            now_s,
            past_s=self.aggregator_event_max_age_days * SECONDS_PER_DAY,
            future_s=self.aggregator_event_max_skew_s,
        )
