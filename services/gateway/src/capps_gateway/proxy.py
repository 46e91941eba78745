"""Forward one authorised call upstream through the keep-alive pool and relay the answer."""

from collections.abc import Sequence
from urllib.parse import urlsplit

from capps_gateway.auth import Principal
from capps_gateway.call import Call
from capps_gateway.headers import downstream_response_headers, upstream_request_headers
from capps_gateway.upstream import UpstreamConnectionError, UpstreamPool

# Answers up to this size are read whole and sent in one piece (the common, fastest case);
# larger or unsized ones are streamed so memory stays bounded.
BUFFER_LIMIT = 1024 * 1024


class UpstreamError(Exception):
    """The upstream failed: `timeout` tells 504 from 502; `response_started` whether it is late."""

    def __init__(self, *, timeout: bool, response_started: bool) -> None:
        super().__init__("upstream timeout" if timeout else "upstream unreachable")
        self.timeout = timeout
        self.response_started = response_started


class UpstreamProxy:
    """Relays calls to the platform API; raises UpstreamError on connection failure or timeout."""

    def __init__(self, pool: UpstreamPool, base_url: str) -> None:
        self._pool = pool
        self._prefix = urlsplit(base_url.rstrip("/")).path
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}".encode("latin-1")

    async def forward(
        self,
        call: Call,
        *,
        body: bytes,
        principal: Principal,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
        headers: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> int:
        """Relay the call and its answer; return the upstream status.

        `headers` replace the caller's (the traced proxy swaps the trace context in them).
        """
        target = self._prefix + call.path
        if call.query:
            target += "?" + call.query.decode("latin-1")
        outgoing = upstream_request_headers(
            call.headers if headers is None else headers,
            call.request_id,
            principal.app_id,
            principal.tenant_id,
            client_ip=call.client_ip,
        )
        try:
            answer = await self._pool.exchange(call.method, target, outgoing, body)
            try:
                returned = downstream_response_headers(
                    answer.headers, call.request_id, self._origin
                )
                returned += extra_headers
                # A whole answer (the common case) goes out in one write.
                if answer.complete or _fits_buffer(answer.headers):
                    payload = await answer.read()
                    call.respond(answer.status, returned, payload)
                    return answer.status
                call.start(answer.status, returned)
                while (chunk := await answer.next_chunk()) is not None:
                    await call.send(chunk)
                call.finish()
                return answer.status
            finally:
                answer.finish()
        except TimeoutError:
            raise UpstreamError(timeout=True, response_started=call.started) from None
        except UpstreamConnectionError:
            raise UpstreamError(timeout=False, response_started=call.started) from None


def _fits_buffer(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the answer declares a length (and is not chunked) of at most BUFFER_LIMIT."""
    length = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            return False
        if lowered == b"content-length" and value.strip().isdigit():
            length = int(value)
    return length is not None and length <= BUFFER_LIMIT
