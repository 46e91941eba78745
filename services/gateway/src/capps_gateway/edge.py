"""The HTTP edge's limits uvicorn lacks: header size (431) and header/body read timeouts.

uvicorn's httptools protocol reads headers of any size and waits for them forever (measured:
500 half-sent requests stay open indefinitely, a 100 KB header is accepted). This subclass
counts the bytes of each request head and arms a timer from its first byte (or the connection's
opening) until its headers are complete, and another while a declared body arrives. Past a
limit it answers with the gateway's JSON error, `Connection: close`, and closes. It touches
only the protocol's documented callbacks (connection_made, data_received, the parser's on_*).
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from capps_events import new_event_id
from capps_gateway import errors, metrics
from capps_gateway.errors import GatewayError

LINGER_S = 1.0
STATUS_TEXT = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def raw_error(error: GatewayError) -> bytes:
    """A whole HTTP/1.1 error answer that closes the connection."""
    headers, body = errors.render(error, new_event_id())
    lines = [b"HTTP/1.1 %d %s" % (error.status, STATUS_TEXT.get(error.status, b"Error"))]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit and read timeouts."""

    max_header_bytes = 16 * 1024
    header_timeout_s = 10.0
    body_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header clock at once: a connection that never sends is closed too."""
        super().connection_made(transport)
        self._arm(self.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count head bytes as they come, and refuse a head over the limit before it ends."""
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes and not self._refused:
            self._refuse(_too_large(self.max_header_bytes), "header_too_large")

    def on_message_begin(self) -> None:
        """A new request on the connection: its head has the header timeout from now."""
        super().on_message_begin()
        self._in_head = True
        if self._timer is None:
            self._arm(self.header_timeout_s, self._head_timed_out)

    def on_headers_complete(self) -> None:
        """Check the head's size, stop its clock, and start the body's when one is declared."""
        if self._refused:
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_header_bytes:
            self._refuse(_too_large(self.max_header_bytes), "header_too_large")
            return
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        super().on_headers_complete()
        for name, value in self.headers:
            if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
                self._arm(self.body_timeout_s, self._body_timed_out)
                break

    def on_body(self, body: bytes) -> None:
        """Relay body bytes unless the request was refused."""
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The whole request arrived: stop the body clock."""
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()

    def _arm(self, delay_s: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes:
                self._refuse(_timed_out("request headers", self.header_timeout_s), "header_timeout")
            else:
                # An idle connection with nothing sent: close it quietly (keep-alive expiry).
                self.transport.close()

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self.transport.is_closing():
            return
        if not cycle.response_started:
            self._refuse(_timed_out("the request body", self.body_timeout_s), "body_timeout")
        else:
            self.transport.close()
        # The app waiting for the body hears that the caller is gone.
        cycle.disconnected = True
        cycle.message_event.set()

    def _refuse(self, error: GatewayError, reason: str) -> None:
        self._refused = True
        self._disarm()
        metrics.EDGE_REFUSALS.labels(reason).inc()
        if not self.transport.is_closing():
            self.transport.write(raw_error(error))
            # Lingering close: closing with the caller's bytes unread would reset the
            # connection before it reads the answer; what still arrives is discarded.
            self.loop.call_later(LINGER_S, self.transport.close)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        431, "header_too_large", f"the request line and headers exceed {limit} bytes"
    )


def _timed_out(what: str, seconds: float) -> GatewayError:
    return GatewayError(408, "request_timeout", f"{what} did not arrive within {seconds:g} s")


def guarded_protocol(
    *, max_header_bytes: int, header_timeout_s: float, body_timeout_s: float
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` with these limits."""
    return type(
        "GatewayHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
        },
    )
