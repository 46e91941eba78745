"""Forward one authorised call upstream through the keep-alive pool and relay the answer."""

from collections.abc import Sequence
from urllib.parse import urlsplit

from capps_gateway.auth import Principal
from capps_gateway.headers import downstream_response_headers, upstream_request_headers
from capps_gateway.upstream import UpstreamConnectionError, UpstreamPool
from capps_kit.asgi import Send

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
        *,
        method: str,
        raw_path: str,
        query_string: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        request_id: str,
        principal: Principal,
        send: Send,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
        client_ip: str = "",
        scheme: str = "http",
    ) -> tuple[int, int]:
        """Relay the call and its answer; return the upstream status and the bytes sent back."""
        target = self._prefix + raw_path
        if query_string:
            target += "?" + query_string.decode("latin-1")
        outgoing = upstream_request_headers(
            headers,
            request_id,
            principal.app_id,
            principal.tenant_id,
            client_ip=client_ip,
            scheme=scheme,
        )
        started = False
        try:
            answer = await self._pool.exchange(method, target, outgoing, body)
            try:
                returned = downstream_response_headers(answer.headers, request_id, self._origin)
                returned += extra_headers
                # A whole answer (the common case) needs no second pass over its headers.
                if answer.complete or _fits_buffer(answer.headers):
                    payload = await answer.read()
                    returned.append((b"content-length", b"%d" % len(payload)))
                    started = True
                    await send(
                        {
                            "type": "http.response.start",
                            "status": answer.status,
                            "headers": returned,
                        }
                    )
                    await send({"type": "http.response.body", "body": payload})
                    return answer.status, len(payload)
                started = True
                await send(
                    {"type": "http.response.start", "status": answer.status, "headers": returned}
                )
                sent = 0
                async for chunk in answer.chunks():
                    sent += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return answer.status, sent
            finally:
                answer.finish()
        except TimeoutError:
            raise UpstreamError(timeout=True, response_started=started) from None
        except UpstreamConnectionError:
            raise UpstreamError(timeout=False, response_started=started) from None


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
