"""Prometheus metrics of the gateway, served by the admin app's `/metrics`.

With several worker processes (`GATEWAY_WORKERS`), prometheus_client's multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`, set by the supervisor) keeps each worker's values in files the
supervisor's admin port aggregates; gauges say how (sum over live workers, min, max). A gauge
read from a function (`track`) is then sampled every second instead of read at scrape time.
"""

import os
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
_TRACKED: list[tuple[Gauge, Callable[[], float]]] = []


def track(gauge: Gauge, read: Callable[[], float]) -> None:
    """Report `read()` as the gauge's value: at scrape time, or sampled in multiprocess mode."""
    if MULTIPROCESS:
        _TRACKED.append((gauge, read))
    else:
        gauge.set_function(read)


def sample_tracked() -> None:
    """Copy every tracked gauge's current value into its multiprocess file."""
    for gauge, read in _TRACKED:
        gauge.set(read())


REQUESTS = Counter(
    "capps_gateway_requests_total",
    "Calls answered by the gateway, by route template and status.",
    ["route", "status"],
)
REQUEST_DURATION = Histogram(
    "capps_gateway_request_duration_seconds",
    "Time from receiving a call to finishing its answer.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LOOP_LAG = Histogram(
    "capps_gateway_loop_lag_seconds",
    "How late the event loop woke for a 0.1 s timer: the wait a call arriving then would add.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
UNAUTHENTICATED = Counter(
    "capps_gateway_unauthenticated_total",
    "Calls refused before any app was identified, by reason.",
    ["reason"],
)
UPSTREAM_ERRORS = Counter(
    "capps_gateway_upstream_errors_total",
    "Upstream calls that failed, by kind (connect, timeout, client_gone).",
    ["kind"],
)
EVENTS_SENT = Counter("capps_gateway_events_sent_total", "Request events acknowledged by Kafka.")
EVENTS_FAILED = Counter(
    "capps_gateway_events_failed_total",
    "Request events not delivered straight to Kafka, by what became of them: spooled "
    "(replayed later), ambiguous (maybe written, set aside) or lost (dropped).",
    ["stage"],
)
EVENTS_LOST = Counter(
    "capps_gateway_events_lost_total",
    "Request events dropped because the spool could not take them (spool_full: at its "
    "size cap; disk_full; write_failed): served calls that will never be counted.",
    ["reason"],
)
for _stage in ("spooled", "ambiguous", "lost"):
    EVENTS_FAILED.labels(_stage)
for _reason in ("spool_full", "disk_full", "write_failed"):
    EVENTS_LOST.labels(_reason)
TASK_RESTARTS = Counter(
    "capps_gateway_task_restarts_total",
    "Background tasks of the event publisher restarted after an unexpected error.",
    ["task"],
)
JWKS_FETCHES = Counter(
    "capps_gateway_jwks_fetches_total", "JWKS fetches from the registry, by result.", ["result"]
)
EVENTS_SPOOLED = Counter(
    "capps_gateway_events_spooled_total", "Request events written to the on-disk spool."
)
EVENTS_REPLAYED = Counter(
    "capps_gateway_events_replayed_total", "Spooled request events acknowledged by Kafka."
)
EVENTS_AMBIGUOUS = Counter(
    "capps_gateway_events_ambiguous_total",
    "Request events sent but never acknowledged: maybe written, kept aside, never replayed.",
)
SPOOL_BYTES = Gauge(
    "capps_gateway_spool_bytes",
    "Bytes of request events waiting in the spool.",
    multiprocess_mode="livesum",
)
SPOOL_SEGMENTS = Gauge(
    "capps_gateway_spool_segments", "Segment files in the spool.", multiprocess_mode="livesum"
)
CONNECTIONS = Gauge(
    "capps_gateway_connections",
    "Open client connections on the proxy port.",
    multiprocess_mode="livesum",
)
COMPILED = Gauge(
    "capps_gateway_compiled",
    "1 when the per-call modules run compiled (services/gateway/native.py), 0 interpreted.",
    multiprocess_mode="livemin",
)
CALLS_IN_PROGRESS = Gauge(
    "capps_gateway_calls_in_progress",
    "Calls being served; past GATEWAY_MAX_IN_FLIGHT (per process) calls are refused with 503.",
    multiprocess_mode="livesum",
)
EVENTS_PENDING = Gauge(
    "capps_gateway_events_pending",
    "Request events not yet acknowledged, by where they wait (buffer, in_flight).",
    ["where"],
    multiprocess_mode="livesum",
)
KAFKA_HEALTHY = Gauge(
    "capps_gateway_kafka_healthy",
    "1 while events go straight to Kafka, 0 while they spool (the least of all workers).",
    multiprocess_mode="livemin",
)

EDGE_REFUSALS = Counter(
    "capps_gateway_edge_refusals_total",
    "Connections answered and closed by the HTTP edge, by reason (header_too_large, "
    "header_timeout, body_timeout).",
    ["reason"],
)
RATELIMIT_CHECKS = Counter(
    "capps_gateway_ratelimit_checks_total",
    "Rate-limit checks, by who decided (lease: this process's leased tokens; redis: a batched "
    "round trip; local: the fallback while Redis is away).",
    ["source"],
)
RATELIMIT_ROUND_TRIPS = Counter(
    "capps_gateway_ratelimit_round_trips_total",
    "Batched rate-limit script calls sent to Redis (checks / round trips = batch size).",
)
RATELIMIT_LEASED = Counter(
    "capps_gateway_ratelimit_leased_tokens_total",
    "Tokens leased from Redis ahead of this process's calls (counted in the windows at once).",
)
RATELIMIT_LEASE_UNUSED = Counter(
    "capps_gateway_ratelimit_lease_unused_tokens_total",
    "Leased tokens never spent: their window ended or the app's limit changed first.",
)
RATELIMIT_FALLBACK = Gauge(
    "capps_gateway_ratelimit_fallback",
    "1 while Redis does not answer and each process limits alone at limit / processes.",
    multiprocess_mode="livemax",
)
for _source in ("lease", "redis", "local"):
    RATELIMIT_CHECKS.labels(_source)

APPS_KNOWN = Gauge(
    "capps_gateway_apps_known",
    "Apps in the gateway's local view of app state (the fewest of all workers).",
    multiprocess_mode="livemin",
)
APP_STATE_RECORDS = Counter(
    "capps_gateway_app_state_records_total",
    "App state records read, by result (applied, or ignored as older or deleted).",
    ["result"],
)
APP_STATE_DECODE_ERRORS = Counter(
    "capps_gateway_app_state_decode_errors_total", "App state records that could not be decoded."
)
APP_VIEW_LAG = Gauge(
    "capps_gateway_app_view_lag_records",
    "Records of the apps topic not yet read by the local view (as of the last fetch).",
    multiprocess_mode="livemax",
)
APP_WAITS = Counter(
    "capps_gateway_app_waits_total",
    "Calls that waited for an app unknown to the local view, by result (arrived, timeout).",
    ["result"],
)
# Every known label value starts at 0, so the series exist before the first failure: an alert
# or a rate() over them answers 0 instead of nothing, and multiprocess mode exposes them.
for _kind in ("connect", "timeout", "client_gone"):
    UPSTREAM_ERRORS.labels(_kind)
for _result in ("arrived", "timeout"):
    APP_WAITS.labels(_result)


class RequestMetrics:
    """Caches labelled children so the hot path does one dict lookup instead of `labels()`."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], Counter] = {}
        self._durations: dict[str, Histogram] = {}
        self._refusals: dict[str, Counter] = {}

    def observe(self, route: str, status: int, duration_s: float) -> None:
        """Count one answered call and its duration."""
        counter = self._counts.get((route, status))
        if counter is None:
            counter = self._counts[route, status] = REQUESTS.labels(route, str(status))
        counter.inc()
        histogram = self._durations.get(route)
        if histogram is None:
            histogram = self._durations[route] = REQUEST_DURATION.labels(route)
        histogram.observe(duration_s)

    def observe_refused(self, route: str, status: int, reason: str, duration_s: float) -> None:
        """Count one call refused before any app was identified."""
        counter = self._refusals.get(reason)
        if counter is None:
            counter = self._refusals[reason] = UNAUTHENTICATED.labels(reason)
        counter.inc()
        self.observe(route, status, duration_s)


# External identity providers (auth/issuer_keys.py): one label value per configured issuer.
ISSUER_KEY_FETCHES = Counter(
    "capps_gateway_issuer_key_fetches_total",
    "Discovery and JWKS fetches of external issuers, by issuer and result (ok, error).",
    ["issuer", "result"],
)
ISSUER_KEYS_FETCHED_AT = Gauge(
    "capps_gateway_issuer_keys_fetched_timestamp_seconds",
    "When each external issuer's keys were last fetched successfully (Unix time).",
    ["issuer"],
    multiprocess_mode="max",
)


# Every labelled series exists from the start (at 0): with several workers (multiprocess mode)
# a family without any sample would be missing from /metrics, and rules reading it would see
# nothing instead of zero.
for _kind in ("connect", "timeout", "client_gone"):
    UPSTREAM_ERRORS.labels(_kind)
for _result in ("arrived", "timeout"):
    APP_WAITS.labels(_result)
for _result in ("applied", "ignored"):
    APP_STATE_RECORDS.labels(_result)
for _reason in ("header_too_large", "header_timeout", "body_timeout"):
    EDGE_REFUSALS.labels(_reason)
for _reason in ("missing", "invalid", "keys_unavailable", "overloaded", "invalid_path"):
    UNAUTHENTICATED.labels(_reason)
