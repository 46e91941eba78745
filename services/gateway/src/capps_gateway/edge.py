"""The gateway's HTTP/1.1 edge: one asyncio Protocol per connection, parsed by httptools.

It replaces uvicorn and ASGI on the proxy port. Measured side by side (uvloop, the same C
parser, a static 7.6 KB answer): uvicorn costs 30-35 CPU µs per call, this protocol 11-14. The
difference is ASGI's shape (a scope dict, message dicts, a receive and a send coroutine per
call) and uvicorn's general checks; the relay needs none of it. A call is one `Call`: the
request as parsed and the means to answer it, whole in one `write()` in the common case.

Its limits: a request head over `max_header_bytes` is answered 431; a head not complete within
`header_timeout_s` of its first byte, or a declared body that stops arriving for
`body_timeout_s`, 408 (slowloris); an idle keep-alive connection is closed after
`keep_alive_s`. Refusals are the gateway's JSON errors with `Connection: close`. These
clocks are coarse deadlines (deadlines.py), checked a few times a second, not a loop timer each.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import cast

import httptools

from capps_events import new_event_id
from capps_gateway import errors, metrics
from capps_gateway.call import MAX_BODY_BYTES, Call, Handler, answer_head
from capps_gateway.deadlines import Deadlines, sweep_interval
from capps_gateway.errors import GatewayError

log = logging.getLogger(__name__)

LINGER_S = 1.0
"""How long a refused connection stays open, so the caller reads the answer before the close."""


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The edge's limits, from the settings."""

    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 30.0
    max_body_bytes: int = MAX_BODY_BYTES


class Edge:
    """The connections of one listening server, for a graceful stop."""

    def __init__(self, handler: Handler, limits: EdgeLimits) -> None:
        self.handler = handler
        self.limits = limits
        self.connections: set[EdgeProtocol] = set()
        self._date = b""
        self._date_second = -1
        self._idle = asyncio.Event()
        self._idle.set()
        # The calls being served: the loop keeps only weak references to tasks.
        self.tasks: set[asyncio.Task[None]] = set()
        self.deadlines = Deadlines(
            asyncio.get_running_loop(),
            sweep_interval(limits.header_timeout_s, limits.body_timeout_s, limits.keep_alive_s),
        )

    def protocol(self) -> "EdgeProtocol":
        """A protocol for one new connection (the factory for `loop.create_server`)."""
        return EdgeProtocol(self)

    def date_line(self) -> bytes:
        """The `date` header line, formatted once a second."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = b"date: %s\r\n" % formatdate(now, usegmt=True).encode("ascii")
        return self._date

    def opened(self, conn: "EdgeProtocol") -> None:
        """A connection opened."""
        self.connections.add(conn)
        self._idle.clear()

    def closed(self, conn: "EdgeProtocol") -> None:
        """A connection closed."""
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    async def drain(self, grace_s: float) -> None:
        """Close idle connections and let busy ones finish their call; past `grace_s`, drop
        the connections still open. Then wait (as long again at most) for the calls to end."""
        for conn in list(self.connections):
            conn.shut_down()
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            log.warning(
                "calls still in progress at the end of the shutdown grace; dropping them",
                extra={"connections": len(self.connections), "grace_s": grace_s},
            )
            for conn in list(self.connections):
                conn.abort()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace_s)


class EdgeProtocol(asyncio.Protocol):
    """One caller's connection: parse requests, run one call at a time, write answers."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge
        self._limits = edge.limits
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._client_ip = ""
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_head = True
        self._refused = False
        self._closing = False
        self._deadlines = edge.deadlines
        self._reading: Call | None = None
        self._serving: Call | None = None
        self._waiting: deque[Call] = deque()
        self._held_for_call = self._held_for_body = self._reading_paused = False
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self.date_line = b""

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the header clock at once: a connection that never sends is closed too."""
        # uvloop's transports are not subclasses of asyncio's, but have the same methods.
        self.transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        self._client_ip = peer[0] if isinstance(peer, tuple) else ""
        self._edge.opened(self)
        self._arm(self._limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - the cause is not needed
        """The caller is gone: a call still reading its body hears it; writes stop."""
        self._closing = True
        self._disarm()
        for call in (self._reading, self._serving, *self._waiting):
            if call is not None:
                call.lose()
        self._waiting.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._edge.closed(self)

    def data_received(self, data: bytes) -> None:
        """Count head bytes as they come, and refuse a head over the limit before it ends."""
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(
                GatewayError(400, "upgrade_refused", "protocol upgrades are not supported"),
                "upgrade",
            )
            return
        except httptools.HttpParserError as exc:
            self._refuse(GatewayError(400, "bad_request", f"invalid HTTP: {exc}"), "bad_request")
            return
        if self._in_head and self._head_bytes > self._limits.max_header_bytes:
            self._refuse(_too_large(self._limits.max_header_bytes), "header_too_large")

    def pause_writing(self) -> None:
        """The kernel's buffer is full: streamed answers wait."""
        self._paused = True

    def resume_writing(self) -> None:
        """The buffer drained."""
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        """A new request on the connection: its head has the header timeout from now."""
        self._in_head = True
        self._url = b""
        self._headers = []
        if self._serving is None:
            self._arm(self._limits.header_timeout_s, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        """The request target (possibly in pieces)."""
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One request header; names lower-cased once here."""
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        """Check the head's size, stop its clock, and start (or queue) the call."""
        if self._refused:
            return
        url = self._url
        size = len(url) + sum(len(name) + len(value) + 4 for name, value in self._headers)
        if size > self._limits.max_header_bytes:
            self._refuse(_too_large(self._limits.max_header_bytes), "header_too_large")
            return
        self._in_head = False
        self._head_bytes = 0
        if self._serving is None:
            self._disarm()
        call = self._reading = self._new_call()
        if self._serving is None:
            self._begin(call)
        else:
            # A pipelined request waits for the one before; reading pauses meanwhile.
            self._waiting.append(call)
            self._held_for_call = True
            self._apply_hold()

    def _new_call(self) -> Call:
        url = self._url
        if url[:1] == b"/":
            path, _, query = url.partition(b"?")
            query = query.partition(b"#")[0]
        else:
            parsed = httptools.parse_url(url)
            path, query = parsed.path or b"/", parsed.query or b""
        parser = self._parser
        call = Call(
            self,
            parser.get_method().decode("ascii"),
            path.decode("latin-1"),
            query,
            self._headers,
            client_ip=self._client_ip,
            max_body=self._limits.max_body_bytes,
        )
        call.keep_alive = parser.should_keep_alive() and not self._closing
        body_expected = False
        for name, value in self._headers:
            if name == b"content-length":
                body_expected = value != b"0"
                if value.isdigit():
                    call.bytes_in = int(value)
            elif name == b"transfer-encoding":
                body_expected = True
            elif name == b"expect" and value.lower() == b"100-continue":
                call.expect_continue = True
        call.body_complete = not body_expected
        return call

    def on_body(self, body: bytes) -> None:
        """Body bytes for the call being read."""
        if self._reading is not None and not self._refused and self._reading.feed_body(body):
            # Bounded memory: the caller's bytes wait in its socket until the call reads them.
            self._held_for_body = True
            self._apply_hold()

    def on_message_complete(self) -> None:
        """The whole request arrived: stop the body clock."""
        if self._refused or self._reading is None:
            return
        call, self._reading = self._reading, None
        if not call.body_complete:
            call.end_body()
        if call is self._serving:
            self._disarm()

    # -- calls
    def _begin(self, call: Call) -> None:
        self._serving = call
        if not call.body_complete:
            self._arm(self._limits.body_timeout_s, self._body_timed_out)
        self.date_line = self._edge.date_line()
        task = self.loop.create_task(self._run(call))
        tasks = self._edge.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run(self, call: Call) -> None:
        try:
            await self._edge.handler(call)
        except Exception:
            log.exception("unhandled error serving a call")
            if not call.started and not self._closing:
                call.keep_alive = False
                error = GatewayError(500, "internal_error", "the gateway failed on this call")
                headers, body = errors.render(error, call.request_id or new_event_id())
                call.respond(500, headers, body)
        if not call.complete:
            # The handler gave up mid-answer (caller gone, upstream broke): drop the connection.
            self.abort()
            call.complete = True
            self.call_done(call)

    def call_done(self, call: Call) -> None:
        """A call's answer is out: close, or serve the next pipelined call, or wait for one."""
        if call is not self._serving:
            return
        self._serving = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not call.body_complete:
            # An unread body would be parsed as the next request: close instead, lingering
            # so the caller, still sending, reads the answer before the connection goes;
            # meanwhile its bytes are read and dropped (a held socket would reset on close).
            self._refused = self._closing = True
            self._held_for_call = self._held_for_body = False
            self._apply_hold()
            self._disarm()
            self.loop.call_later(LINGER_S, transport.close)
            return
        if not call.keep_alive or self._closing:
            transport.close()
            return
        if self._held_for_call or self._held_for_body:
            self._held_for_call = self._held_for_body = False
            self._apply_hold()
        if self._waiting:
            self._begin(self._waiting.popleft())
            return
        if self._in_head and self._head_bytes:
            self._arm(self._limits.header_timeout_s, self._head_timed_out)
        else:
            self._arm(self._limits.keep_alive_s, self._idle_timed_out)

    def write(self, data: bytes) -> None:
        """Write to the caller unless it is gone."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def drained(self) -> None:
        """Wait while the caller's socket buffer is full."""
        if self._paused and not self._closing:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    def want_body(self) -> None:
        """The call waits for its body: read on."""
        if self._held_for_body:
            self._held_for_body = False
            self._apply_hold()

    def abort(self) -> None:
        """Close at once."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def shut_down(self) -> None:
        """The server stops: close now when idle, else after the call in progress."""
        self._closing = True
        if self._serving is None and self.transport is not None:
            self.transport.close()
        elif self._serving is not None:
            self._serving.keep_alive = False

    # -- limits
    def _apply_hold(self) -> None:
        """Pause reading while a pipelined call waits or a body is held, else read."""
        pause = self._held_for_call or self._held_for_body
        transport = self.transport
        if pause == self._reading_paused or transport is None or transport.is_closing():
            return
        self._reading_paused = pause
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        self._deadlines.arm(self, delay_s, callback)

    def _disarm(self) -> None:
        self._deadlines.disarm(self)

    def _idle_timed_out(self) -> None:
        if self._serving is None and self.transport is not None:
            self.transport.close()

    def _head_timed_out(self) -> None:
        if self._serving is not None or self.transport is None or self.transport.is_closing():
            return
        if self._head_bytes:
            self._refuse(
                _timed_out("request headers", self._limits.header_timeout_s), "header_timeout"
            )
        else:
            # An idle connection with nothing sent: close it quietly (keep-alive expiry).
            self.transport.close()

    def _body_timed_out(self) -> None:
        call = self._serving
        if call is None or call.complete or self.transport is None:
            return
        if not call.started:
            self._refuse(
                _timed_out("the request body", self._limits.body_timeout_s), "body_timeout"
            )
        else:
            self.abort()
        # The call waiting for its body hears that the caller is gone.
        call.lose()

    def _refuse(self, error: GatewayError, reason: str) -> None:
        self._refused = True
        self._closing = True
        self._disarm()
        metrics.EDGE_REFUSALS.labels(reason).inc()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self._serving is None or not self._serving.started:
                transport.write(raw_error(error))
            # Lingering close: closing with the caller's bytes unread would reset the
            # connection before it reads the answer; what still arrives is discarded.
            self.loop.call_later(LINGER_S, transport.close)


def raw_error(error: GatewayError) -> bytes:
    """A whole HTTP/1.1 error answer that closes the connection."""
    headers, body = errors.render(error, new_event_id())
    head = answer_head(error.status, headers, date_line=b"", close=True)
    head.append(b"content-length: %d\r\n\r\n" % len(body))
    return b"".join(head) + body


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        431, "header_too_large", f"the request line and headers exceed {limit} bytes"
    )


def _timed_out(what: str, seconds: float) -> GatewayError:
    return GatewayError(408, "request_timeout", f"{what} did not arrive within {seconds:g} s")
