"""uvicorn with a header read timeout, which uvicorn lacks: a half-sent request is closed.

Without it, connections that send part of a request head and stop stay open for as long as
the peer likes (measured: 500 of them, indefinitely), holding sockets and memory. This
subclasses uvicorn's httptools protocol (a private API: uvicorn is pinned below 0.55 in
pyproject.toml, so an upgrade re-checks this one file): a timer starts when a connection
opens and when a request begins, and closes the connection unless the head is complete in
time; the bytes of a pending head are counted and a head over 16 KiB is answered 431. Idle
keep-alive connections are uvicorn's own `timeout_keep_alive`.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from capps_kit.asgi import error_body

HEADER_READ_TIMEOUT_S = 10.0
# httptools itself accepts heads of any size; 16 KiB holds any sane request line and headers.
MAX_HEAD_BYTES = 16 * 1024
_TOO_LARGE_BODY = error_body("headers_too_large", "the request head is over 16 KiB", "connection")
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: "
    + str(len(_TOO_LARGE_BODY)).encode()
    + b"\r\n\r\n"
    + _TOO_LARGE_BODY
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes a connection whose request head does not arrive in time."""

    header_read_timeout_s = HEADER_READ_TIMEOUT_S
    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        """Count the bytes of a pending head; refuse one over the limit (431) and close."""
        if self._head_timer is not None:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._stop_head_timer()
                self.transport.write(_TOO_LARGE)
                self.transport.close()
                return
        super().data_received(data)

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.header_read_timeout_s, self._head_timed_out
            )

    def _stop_head_timer(self) -> None:
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start waiting for the first request head."""
        super().connection_made(transport)
        self._start_head_timer()

    def on_message_begin(self) -> None:
        """A request starts: its head must complete in time."""
        super().on_message_begin()
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        """The head is in: the body and the app are not bounded by this timer."""
        self._stop_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the timer with the connection."""
        self._stop_head_timer()
        super().connection_lost(exc)
