"""Prometheus metrics of the registry, and the ASGI middleware that counts requests.

The same middleware gives each request its id (the caller's `X-Request-Id`, else a uuid) and
echoes it back, so error bodies and logs can name it.
"""

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from capps_registry.errors import REQUEST_ID_HEADER, pick_request_id

HTTP_REQUESTS = Counter(
    "capps_registry_http_requests_total",
    "HTTP requests served, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "capps_registry_http_request_duration_seconds",
    "Time to serve a request, by route template.",
    ["route"],
)
TOKENS_ISSUED = Counter(
    "capps_registry_tokens_issued_total", "Access tokens issued, by client kind.", ["kind"]
)
TOKENS_REFUSED = Counter(
    "capps_registry_tokens_refused_total", "Token requests refused, by reason.", ["reason"]
)

_REQUEST_ID_BYTES = REQUEST_ID_HEADER.lower().encode()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The matched route's template (bounded label values), or "unmatched"."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    """Assigns the request id, echoes it, and records request count and latency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one HTTP request; other scopes pass through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID_BYTES:
                sent = value.decode("latin-1")
                break
        request_id = pick_request_id(sent)
        # uvicorn gives each request its own copy of the lifespan state, so this is per request.
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name != _REQUEST_ID_BYTES
                ]
                headers.append((_REQUEST_ID_BYTES, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)


OUTBOX_PUBLISHED = Counter(
    "capps_registry_outbox_published_total",
    "Outbox entries published to the apps topic (acknowledged by the broker, then deleted).",
)
OUTBOX_FAILURES = Counter(
    "capps_registry_outbox_publish_failures_total",
    "Outbox relay rounds that failed and will be retried, by stage (database, kafka).",
    ["stage"],
)
OUTBOX_BACKLOG = Gauge(
    "capps_registry_outbox_backlog",
    "Outbox entries waiting to be published, as this registry's relay last counted them.",
)
OUTBOX_OLDEST_AGE = Gauge(
    "capps_registry_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox entry (0 when none), as last counted.",
)
