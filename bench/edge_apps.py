"""Stripped-down handlers served exactly like the gateway, to split a call's cost by stage.

`python -m bench.edge_apps VARIANT PORT UPSTREAM_URL` serves one of them on uvloop, as one
gateway process is served:
- `serve`: answers the static body itself on the gateway's edge (what serving costs per call);
- `relay`: relays every call through the gateway's upstream client (serving + relaying);
- `relay-aiohttp`: the same through one pooled aiohttp session, as the gateway did before;
- `serve-uvicorn`: the `serve` answer as an ASGI app on uvicorn, which served the gateway
  before its edge: the reference the edge is measured against;
- `serve-granian`: the ASGI app on granian (a Rust-core ASGI server), one worker and one
  runtime thread: the other alternative server.
The full gateway minus `relay` is the gateway's own per-call work (token, app state, rate
limit, event, metrics); `relay` minus `serve` is the upstream client's.
"""

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from capps_gateway.call import Call, Handler
from capps_gateway.edge import Edge, EdgeLimits
from capps_kit.asgi import Receive, Scope, Send, ack_lifespan

HEADERS = [(b"content-type", b"application/json")]


class Serve:
    """Answers the static body from memory, on the gateway's edge."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __call__(self, call: Call) -> None:
        """One call."""
        await call.body()
        call.respond(200, HEADERS, self._body)


class AsgiServe:
    """The same answer as an ASGI app, for uvicorn and granian."""

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

    async def __call__(self, call: Call) -> None:
        """One call."""
        from capps_gateway.upstream import UpstreamPool

        if self._pool is None:
            self._pool = UpstreamPool(
                self._upstream, max_connections=1024, idle_timeout_s=3.0, timeout_s=10.0
            )
        await call.body()
        answer = await self._pool.exchange(call.method, call.path, [], b"")
        try:
            body = await answer.read()
        finally:
            answer.finish()
        call.respond(answer.status, HEADERS, body)


class AiohttpRelay:
    """Relays each call through one pooled aiohttp session, as the gateway did before."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._session: Any = None

    async def __call__(self, call: Call) -> None:
        """One call."""
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1024, keepalive_timeout=3.0),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        await call.body()
        async with self._session.request(call.method, self._upstream + call.path) as response:
            body = await response.read()
        call.respond(response.status, HEADERS, body)


async def serve_on_edge(handler: Handler, port: int) -> None:
    """Serve `handler` on the gateway's edge until SIGTERM."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    edge = Edge(handler, EdgeLimits())
    server = await loop.create_server(edge.protocol, "127.0.0.1", port, backlog=2048)
    await stopping.wait()
    server.close()
    await edge.drain(10.0)


def main() -> None:
    """Serve the variant named on the command line until SIGTERM."""
    variant, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    body = Path(sys.argv[4]).read_bytes() if len(sys.argv) > 4 else b"{}"
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
    import uvloop

    if variant == "serve-uvicorn":
        import uvicorn

        config = uvicorn.Config(
            AsgiServe(body),
            host="127.0.0.1",
            port=port,
            http="httptools",
            lifespan="on",
            log_config=None,
            access_log=False,
        )
        uvloop.run(uvicorn.Server(config).serve())
        return
    handlers: dict[str, Handler] = {
        "serve": Serve(body),
        "relay": Relay(upstream),
        "relay-aiohttp": AiohttpRelay(upstream),
    }
    uvloop.run(serve_on_edge(handlers[variant], port))


BODY_ENV = "BENCH_EDGE_BODY"


def granian_app() -> AsgiServe:
    """The `serve` app, built in granian's worker."""
    return AsgiServe(Path(os.environ[BODY_ENV]).read_bytes())


if __name__ == "__main__":
    main()
