"""One call as the gateway's HTTP edge hands it over: the request as parsed, and its answer.

A `Call` answers whole in one `write()` (the common case) or streamed in chunks; its body is
read whole, bounded, with `Expect: 100-continue` answered on first read. Its connection
(edge.py's protocol) frames, writes and flow-controls; the call only says what to send.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Protocol

MAX_BODY_BYTES = 10 * 1024 * 1024
"""The default limit of a request body."""
BODY_HOLD_BYTES = 64 * 1024
"""Body bytes buffered for a call not reading its body yet, past which reading pauses."""
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in HTTPStatus
}


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <reason>` and its line end."""
    return _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status


def answer_head(
    status: int, headers: Sequence[tuple[bytes, bytes]], *, date_line: bytes, close: bool
) -> list[bytes]:
    """An answer's status line, date line, `headers` and, when the connection closes after
    it, `connection: close`; the framing (length or chunked, blank line) is the caller's."""
    # Header names and values come from the gateway itself or from an upstream answer
    # httptools already parsed (it refuses CR, LF and NUL in both), so no re-validation.
    head = [status_line(status), date_line]
    for name, value in headers:
        head.append(b"%s: %s\r\n" % (name, value))
    if close:
        head.append(b"connection: close\r\n")
    return head


class ClientGoneError(Exception):
    """The caller disconnected (or its body stopped arriving) before its body was whole."""


class BodyTooLargeError(Exception):
    """The request body is over the edge's limit (`EdgeLimits.max_body_bytes`)."""


class Connection(Protocol):
    """What a call needs of its connection (EdgeProtocol; a recorder in unit tests)."""

    loop: asyncio.AbstractEventLoop
    date_line: bytes

    def write(self, data: bytes) -> None:
        """Write to the caller unless it is gone."""

    async def drained(self) -> None:
        """Wait while the caller's socket buffer is full."""

    def call_done(self, call: "Call") -> None:
        """The call's answer is out."""

    def want_body(self) -> None:
        """The call waits for its body: read on."""


class Call:
    """One request as the edge parsed it, and its answer.

    `headers` are the caller's, names lower-cased, values as sent. `bytes_in` is the declared
    body length until the body is read, then its size. `request_id` and `route` are the
    handler's to set (its answers and span carry them). `on_last_write`, when set,
    runs once just before the answer's last bytes are written, with the status and the body
    bytes sent; the gateway publishes the call's event there, so a killed process never loses
    an answered call.
    """

    __slots__ = (
        "_body",
        "_body_size",
        "_body_waiter",
        "_conn",
        "_max_body",
        "body_complete",
        "bytes_in",
        "bytes_out",
        "chunked",
        "client_ip",
        "complete",
        "expect_continue",
        "gone",
        "headers",
        "keep_alive",
        "method",
        "on_last_write",
        "path",
        "query",
        "request_id",
        "route",
        "started",
        "status",
    )

    def __init__(
        self,
        conn: Connection,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        client_ip: str,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self._conn = conn
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.client_ip = client_ip
        self.keep_alive = True
        self.expect_continue = False
        self._body: list[bytes] = []
        self._body_size = 0
        self._max_body = max_body
        self._body_waiter: asyncio.Future[None] | None = None
        self.body_complete = False
        self.gone = False
        self.started = False
        self.complete = False
        self.chunked = False
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.route: str | None = None
        self.request_id = ""
        self.on_last_write: Callable[[int, int], None] | None = None

    # -- the request body
    async def body(self) -> bytes:
        """The whole body; BodyTooLargeError past the edge's `max_body_bytes` (at once when
        the declared length says so), ClientGoneError if the caller is gone."""
        if self.bytes_in > self._max_body:
            raise BodyTooLargeError
        if not self.body_complete and self.expect_continue and not self.started:
            self.expect_continue = False
            self._conn.write(CONTINUE)
        while not self.body_complete:
            if self.gone:
                raise ClientGoneError
            if self._body_size > self._max_body:
                raise BodyTooLargeError
            self._body_waiter = self._conn.loop.create_future()
            self._conn.want_body()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
        if self._body_size > self._max_body:
            raise BodyTooLargeError
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
        self.bytes_in = len(body)
        return body

    def feed_body(self, chunk: bytes) -> bool:
        """Body bytes arrived (kept up to the limit, counted past it); whether the connection
        should hold further bytes: many are buffered and the call is not reading yet."""
        self._body_size += len(chunk)
        if self._body_size <= self._max_body:
            self._body.append(chunk)
        if self._body_waiter is None:
            return self._body_size > BODY_HOLD_BYTES
        self._wake()
        return False

    def end_body(self) -> None:
        """The whole body arrived."""
        self.body_complete = True
        self._wake()

    def lose(self) -> None:
        """The caller is gone."""
        self.gone = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the answer
    def respond(self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> None:
        """The whole answer in one write; `headers` carry neither length nor framing."""
        if self.started:
            return
        self.started = True
        self.status = status
        head = self._head(status, headers)
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        self.bytes_out = len(body)
        if self.on_last_write is not None:
            self.on_last_write(status, len(body))
        if self.method != "HEAD":
            head.append(body)
        self._conn.write(b"".join(head))
        self._done()

    def start(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """Begin a streamed answer (chunked); `send` its body, then `finish`."""
        self.started = True
        self.status = status
        head = self._head(status, headers)
        if self.method != "HEAD":
            self.chunked = True
            head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"\r\n")
        self._conn.write(b"".join(head))

    async def send(self, chunk: bytes) -> None:
        """One piece of a streamed answer; waits while the caller reads slower than it comes."""
        if not chunk or not self.chunked or self.complete:
            return
        self.bytes_out += len(chunk)
        self._conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await self._conn.drained()

    def finish(self) -> None:
        """End a streamed answer."""
        if self.complete:
            return
        if self.on_last_write is not None:
            self.on_last_write(self.status, self.bytes_out)
        if self.chunked:
            self._conn.write(b"0\r\n\r\n")
        self._done()

    def _head(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        if not self.body_complete:
            # Answered before its body was read (refused): the connection closes after it.
            self.keep_alive = False
        return answer_head(
            status, headers, date_line=self._conn.date_line, close=not self.keep_alive
        )

    def _done(self) -> None:
        self.complete = True
        self.on_last_write = None
        self._conn.call_done(self)


Handler = Callable[[Call], Awaitable[None]]
