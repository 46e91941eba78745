"""Prometheus metrics of the gateway, served by the admin app's `/metrics`."""

from prometheus_client import Counter, Histogram

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
    "Request events that could not be handed to Kafka or were not acknowledged.",
    ["stage"],
)
JWKS_FETCHES = Counter(
    "capps_gateway_jwks_fetches_total", "JWKS fetches from the registry, by result.", ["result"]
)


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
