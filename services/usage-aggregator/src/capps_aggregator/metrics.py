"""The aggregator's Prometheus metrics, served on `/metrics` of the admin endpoint."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_COUNTED = Counter(
    "capps_aggregator_events_counted_total",
    "Events newly counted, per sink.",
    ["sink"],
)
DUPLICATES_SKIPPED = Counter(
    "capps_aggregator_duplicates_skipped_total",
    "Redelivered events a sink had already applied (below its watermark), per sink.",
    ["sink"],
)
DEAD_LETTERED = Counter(
    "capps_aggregator_dead_lettered_total",
    "Records sent to the DLQ topic, per reason (undecodable, time_out_of_window, ...).",
    ["reason"],
)
BATCH_FAILURES = Counter(
    "capps_aggregator_batch_failures_total",
    "Batch attempts that failed on a store or the broker and were retried.",
)
BATCH_SECONDS = Histogram(
    "capps_aggregator_batch_seconds",
    "Time to apply one batch to the DLQ, PostgreSQL and Redis.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WRITE_SECONDS = Histogram(
    "capps_aggregator_write_seconds",
    "Time to apply one batch to one store, per store.",
    ["store"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_EVENTS = Histogram(
    "capps_aggregator_batch_events",
    "Records per batch.",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000),
)
LAG_RECORDS = Gauge(
    "capps_aggregator_lag_records",
    "Records of a partition not counted yet (its highwater minus the next offset to apply).",
    ["partition"],
)
PARTITIONS_PAST_END = Gauge(
    "capps_aggregator_partitions_past_end",
    "Assigned partitions whose stored watermark lies past the topic's end offset: the topic"
    " was recreated (or lost records) under the usage database, and its records read as"
    " already counted.",
)
RETENTION_DELETED = Counter(
    "capps_aggregator_retention_deleted_rows_total",
    "Expired usage rows deleted, per table.",
    ["table"],
)
RETENTION_SECONDS = Histogram(
    "capps_aggregator_retention_batch_seconds",
    "Time of one retention delete batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
