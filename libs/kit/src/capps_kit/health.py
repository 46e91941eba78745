"""A tiny ASGI admin app: `/healthz` (alive), `/readyz` (dependencies answer), `/metrics`.

Raw ASGI on purpose: it runs beside hot request paths and must stay cheap and dependency-free.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping

import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from capps_kit.asgi import Receive, Scope, Send, ack_lifespan, error_body

ReadinessCheck = Callable[[], Awaitable[None]]
"""Raises when the dependency does not answer; the message is shown in `/readyz`."""

DEGRADED = "degraded: "


class Degraded(Exception):  # noqa: N818 - a state, not an error: the part is ready all the same
    """Raised by a check whose part works around a failure: shown in `/readyz`, still ready."""


log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0


async def run_checks(checks: Mapping[str, ReadinessCheck]) -> dict[str, str]:
    """Run every check concurrently; map each name to "ok" or the failure reason."""

    async def one(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        except Degraded as exc:
            return f"{DEGRADED}{exc}"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return "ok"

    names = list(checks)
    results = await asyncio.gather(*(one(checks[name]) for name in names))
    return dict(zip(names, results, strict=True))


class AdminApp:
    """Serves health, readiness and Prometheus metrics."""

    def __init__(
        self,
        checks: Mapping[str, ReadinessCheck],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._checks = checks
        self._registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route the three admin paths; anything else is a JSON 404."""
        if scope["type"] == "lifespan":
            await ack_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            await _json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            results = await run_checks(self._checks)
            ready = all(value == "ok" or value.startswith(DEGRADED) for value in results.values())
            await _json(send, 200 if ready else 503, {"ready": ready, "checks": results})
        elif path == "/metrics":
            body = generate_latest(self._registry)
            await _respond(send, 200, body, CONTENT_TYPE_LATEST.encode())
        else:
            body = error_body("not_found", f"no route {path}", None)
            await _respond(send, 404, body, b"application/json")


async def serve_admin(app: AdminApp, host: str, port: int, *, uds: str | None = None) -> None:
    """Run the admin app on its own port (or Unix socket `uds`) inside the current event loop."""
    config = uvicorn.Config(app, host=host, port=port, uds=uds, log_config=None, access_log=False)
    server = _EmbeddedServer(config)
    log.info("admin endpoint listening", extra={"host": host, "port": port, "uds": uds})
    await server.serve()


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process hosting it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: the host (faust, the gateway's main server) owns SIGTERM."""
        yield


async def _json(send: Send, status: int, payload: object) -> None:
    await _respond(send, status, orjson.dumps(payload), b"application/json")


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
