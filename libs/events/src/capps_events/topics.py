"""Topic names and their broker-side configuration, the one place they are defined."""

from dataclasses import dataclass, field

REQUESTS_TOPIC = "capps.requests.v1"
REQUESTS_DLQ_TOPIC = "capps.requests.v1.dlq"
APPS_TOPIC = "capps.apps.v1"

_SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a topic is created: partition count and topic-level configs."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        REQUESTS_TOPIC,
        partitions=12,
        configs={"cleanup.policy": "delete", "retention.ms": str(_SEVEN_DAYS_MS)},
    ),
    TopicSpec(
        REQUESTS_DLQ_TOPIC,
        partitions=1,
        configs={"cleanup.policy": "delete", "retention.ms": str(_SEVEN_DAYS_MS)},
    ),
    TopicSpec(APPS_TOPIC, partitions=6, configs={"cleanup.policy": "compact"}),
)
