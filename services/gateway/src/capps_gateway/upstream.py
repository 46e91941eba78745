"""The relay's HTTP/1.1 client: a keep-alive pool of asyncio Protocols parsed by httptools.

Measured on the bench's edge run, aiohttp's client was the largest share of a call's cost
(~43% of the gateway's samples: request and response objects, timers, stream readers, helpers
per call). The relay needs little of it: one origin, whole request bodies, answers relayed as
they are. This client writes the request in one `write()`, parses the answer with the same C
parser uvicorn uses, and keeps the limits: a deadline for the whole exchange, a cap on the
answer's head, bounded buffering (reading pauses while a streamed body waits for the caller).
Connections are reused newest first and never after `idle_timeout_s` idle, which stays below
the upstream's own keep-alive timeout, so a call is never written to a closing connection.
"""

import asyncio
import collections
import ssl
from collections.abc import Sequence
from typing import cast
from urllib.parse import urlsplit

import httptools

from capps_gateway.deadlines import Deadlines, sweep_interval

MAX_HEAD_BYTES = 64 * 1024
"""Status line and headers of an answer larger than this are refused (502)."""
READ_HIGH_WATER = 256 * 1024
"""Body bytes waiting for the caller past which the connection stops reading."""
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


class UpstreamConnectionError(Exception):
    """The upstream could not be reached, or broke the exchange (closed, malformed answer)."""


class Exchange(asyncio.Protocol):
    """One pooled connection; parses one answer at a time."""

    def __init__(self, pool: "UpstreamPool") -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._head_bytes = 0
        self._head_only = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._head_done = False
        self.complete = False
        self.reusable = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's transports are not subclasses of asyncio's, but have the same methods.
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - the cause is not needed
        """An answer delimited by the connection's end completes here; anything else fails."""
        self.closed = True
        self._pool.forget(self)
        if self._parser is not None and not self.complete:
            if self._head_done and self._until_close():
                self.complete = True
            elif self._error is None:
                self._error = UpstreamConnectionError("upstream closed the connection")
        self._wake()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; extra bytes after an answer make the connection unusable."""
        parser = self._parser
        if parser is None or self.complete:
            self._fail(UpstreamConnectionError("upstream sent bytes nobody asked for"))
            return
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.complete:
                self._fail(UpstreamConnectionError(f"malformed answer: {exc}"))
            return
        if not self._head_done and self._head_bytes > MAX_HEAD_BYTES:
            self._fail(UpstreamConnectionError(f"answer head over {MAX_HEAD_BYTES} bytes"))

    def pause_writing(self) -> None:
        """Requests are small: the transport buffers them; nothing to do."""

    def resume_writing(self) -> None:
        """See pause_writing."""

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        """One header of the answer, as sent."""
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """The head is in: wake the caller (1xx interim answers are skipped)."""
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []
            return
        self.status = status
        self._head_done = True
        if self._head_only:
            # An answer to HEAD has no body whatever its length says; the parser would wait
            # for one, so the answer ends here and the connection is not reused.
            self.complete = True
            self.reusable = False
            self._parser = None
        self._wake()

    def on_body(self, body: bytes) -> None:
        """Buffer body bytes; stop reading while too many wait for the caller."""
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        """The whole answer is in."""
        if not self._head_done:
            return
        assert self._parser is not None
        self.complete = True
        self.reusable = self._parser.should_keep_alive()
        self._wake()

    # -- used by the pool and the caller
    def start(self, request: bytes, *, head_only: bool, deadline: float) -> None:
        """Write one request and arm its deadline."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._head_bytes = 0
        self._head_only = head_only
        self.status = 0
        self.headers = []
        self._head_done = self.complete = self.reusable = False
        self._error = None
        self._pool.deadlines.arm_at(self, deadline, self._timed_out)
        self.transport.write(request)

    async def head(self) -> None:
        """Wait until the answer's head is in."""
        while not self._head_done:
            await self._wait()

    async def read(self) -> bytes:
        """The rest of the body, whole."""
        while not self.complete:
            await self._wait()
        body = b"".join(self._chunks)
        self._take()
        return body

    async def next_chunk(self) -> bytes | None:
        """The body's next part as it arrives, None once it is all read.

        A method rather than an async generator: mypyc (native.py) compiles no async
        generators."""
        while True:
            if self._chunks:
                chunk = b"".join(self._chunks)
                self._take()
                return chunk
            if self.complete:
                return None
            await self._wait()

    def finish(self) -> None:
        """The exchange is over: back to the pool when whole and reusable, else closed."""
        self._pool.deadlines.disarm(self)
        if self.complete and self.reusable and not self.closed and self._error is None:
            self._parser = None
            self._pool.release(self)
        else:
            self.close()

    def close(self) -> None:
        """Close the connection (it leaves the pool through connection_lost)."""
        self.closed = True
        self._pool.deadlines.disarm(self)
        self._pool.forget(self)
        if self.transport is not None:
            self.transport.close()

    def _take(self) -> None:
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def _until_close(self) -> bool:
        """Whether the answer has neither a length nor chunks: it ends with the connection."""
        for name, _ in self.headers:
            lowered = name.lower()
            if lowered in (b"content-length", b"transfer-encoding"):
                return False
        return True

    async def _wait(self) -> None:
        self._raise_if_failed()
        if self.complete and not self._chunks:
            return
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        # A method, not a second inline check: mypy keeps `self._error` narrowed to None across
        # the await, and the compiled module (native.py) would trust that and fail.
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self.close()
        self._wake()

    def _timed_out(self) -> None:
        self._fail(TimeoutError())


class UpstreamPool:
    """Keep-alive connections to one origin (http or https), at most `max_connections`."""

    def __init__(
        self, base_url: str, *, max_connections: int, idle_timeout_s: float, timeout_s: float
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL must be http(s)://host[:port], not {base_url!r}")
        self.loop = asyncio.get_running_loop()
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._host_header = parts.netloc.rpartition("@")[2].encode("idna")
        self._max = max_connections
        self._idle_timeout_s = idle_timeout_s
        self.timeout_s = timeout_s
        self.deadlines = Deadlines(self.loop, sweep_interval(timeout_s))
        self._idle: collections.deque[Exchange] = collections.deque()
        self._open: set[Exchange] = set()
        self._connecting = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def exchange(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
    ) -> Exchange:
        """Send a request; return its connection once the answer's head is in.

        The caller reads the body (`read`, or `next_chunk` until None) and then calls
        `finish`. Raises TimeoutError past the deadline, UpstreamConnectionError when the
        upstream fails.
        """
        deadline = self.loop.time() + self.timeout_s
        lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), b"host: ", self._host_header]
        for name, value in headers:
            lines.append(b"\r\n%s: %s" % (name, value))
        if body or method not in _BODYLESS_METHODS:
            lines.append(b"\r\ncontent-length: %d" % len(body))
        lines.append(b"\r\n\r\n")
        lines.append(body)
        conn = await self._acquire(deadline)
        try:
            conn.start(b"".join(lines), head_only=method == "HEAD", deadline=deadline)
            await conn.head()
        except BaseException:
            conn.close()
            raise
        return conn

    def release(self, conn: Exchange) -> None:
        """An idle, reusable connection back to the pool (newest reused first)."""
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        self._wake_one()

    def forget(self, conn: Exchange) -> None:
        """A closed connection leaves the pool."""
        if conn in self._open:
            self._open.discard(conn)
            self._wake_one()

    async def close(self) -> None:
        """Close every connection."""
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        self.deadlines.close()

    async def _acquire(self, deadline: float) -> Exchange:
        idle = self._idle
        while True:
            now = self.loop.time()
            # The oldest idle ones sit on the left: close those idle for too long.
            while idle and (idle[0].closed or now - idle[0].idle_since > self._idle_timeout_s):
                idle.popleft().close()
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    return conn
            if len(self._open) + self._connecting < self._max:
                return await self._connect(deadline)
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self, deadline: float) -> Exchange:
        self._connecting += 1
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await self.loop.create_connection(
                    lambda: Exchange(self), self._host, self._port, ssl=self._ssl
                )
        except OSError as exc:
            raise UpstreamConnectionError(f"cannot connect: {exc}") from None
        finally:
            self._connecting -= 1
        self._open.add(conn)
        return conn

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
