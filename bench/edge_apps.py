"""Stripped-down ASGI apps served exactly like the gateway, to split a call's cost by stage.

`python -m bench.edge_apps VARIANT PORT UPSTREAM_URL` serves one of them on uvicorn with the
gateway's guarded protocol and uvloop, as one gateway process is served:
- `serve`: answers the static body itself (what the HTTP server costs per call);
- `relay`: relays every call through the gateway's upstream client (serving + relaying);
- `relay-aiohttp`: the same through one pooled aiohttp session, as the gateway did before;
- `serve-granian`: the `serve` app on granian (a Rust-core ASGI server), one worker and one
  runtime thread: the alternative server, measured beside uvicorn.
The full gateway minus `relay` is the gateway's own per-call work (token, app state, rate
limit, event, metrics); `relay` minus `serve` is the upstream client's.
"""

import os
import sys
from pathlib import Path
from typing import Any

from capps_kit.asgi import Receive, Scope, Send, ack_lifespan

HEADERS = [(b"content-type", b"application/json")]


class Serve:
    """Answers the static body from memory."""

    def __init__(self, body: bytes) -> None:
        self._headers = [*HEADERS, (b"content-length", b"%d" % len(body))]
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One call."""
        if scope["type"] == "lifespan":
            await ack_lifespan(receive, send)
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body})


class Relay:
    """Relays each call through the gateway's upstream client, nothing else."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._pool: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One call."""
        from capps_gateway.upstream import UpstreamPool

        if scope["type"] == "lifespan":
            self._pool = UpstreamPool(
                self._upstream, max_connections=1024, idle_timeout_s=3.0, timeout_s=10.0
            )
            await ack_lifespan(receive, send)
            return
        await receive()
        answer = await self._pool.exchange(scope["method"], scope["raw_path"].decode(), [], b"")
        try:
            body = await answer.read()
        finally:
            answer.finish()
        headers = [*HEADERS, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class AiohttpRelay:
    """Relays each call through one pooled aiohttp session, as the gateway did before."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._session: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One call."""
        import aiohttp

        if scope["type"] == "lifespan":
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1024, keepalive_timeout=3.0),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
            await ack_lifespan(receive, send)
            await self._session.close()
            return
        await receive()
        url = self._upstream + scope["raw_path"].decode()
        async with self._session.request(scope["method"], url) as response:
            body = await response.read()
        headers = [*HEADERS, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    """Serve the variant named on the command line until SIGTERM."""
    variant, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    body = Path(sys.argv[4]).read_bytes() if len(sys.argv) > 4 else b"{}"
    apps: dict[str, Any] = {
        "serve": Serve(body),
        "serve-granian": Serve(body),
        "relay": Relay(upstream),
        "relay-aiohttp": AiohttpRelay(upstream),
    }
    if variant == "serve-granian":
        from granian.constants import Interfaces, Loops
        from granian.server import Server

        # Granian's worker imports its app by name: the factory reads the body's path here.
        os.environ[BODY_ENV] = sys.argv[4]
        Server(
            "bench.edge_apps:granian_app",
            factory=True,
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            workers=1,
            loop=Loops.uvloop,
            websockets=False,
            log_enabled=False,
        ).serve()
        return
    import uvicorn
    import uvloop

    from capps_gateway.server import uvicorn_config
    from capps_gateway.settings import GatewaySettings

    settings = GatewaySettings(gateway_host="127.0.0.1", gateway_port=port)
    config = uvicorn_config(apps[variant], settings)
    uvloop.run(uvicorn.Server(config).serve())


BODY_ENV = "BENCH_EDGE_BODY"


def granian_app() -> Serve:
    """The `serve` app, built in granian's worker."""
    return Serve(Path(os.environ[BODY_ENV]).read_bytes())


if __name__ == "__main__":
    main()
