"""Forward one authorised call upstream through the shared aiohttp session and relay the answer."""

from collections.abc import Sequence
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from capps_gateway.auth import Principal
from capps_gateway.headers import downstream_response_headers, upstream_request_headers
from capps_kit.asgi import Send

# Answers up to this size are read whole and sent in one piece (the common, fastest case);
# larger or unsized ones are streamed so memory stays bounded.
BUFFER_LIMIT = 1024 * 1024
CHUNK_SIZE = 64 * 1024


class UpstreamError(Exception):
    """The upstream failed: `timeout` tells 504 from 502; `response_started` whether it is late."""

    def __init__(self, *, timeout: bool, response_started: bool) -> None:
        super().__init__("upstream timeout" if timeout else "upstream unreachable")
        self.timeout = timeout
        self.response_started = response_started


def create_session(max_connections: int, idle_timeout_s: float) -> aiohttp.ClientSession:
    """The one pooled client session: keep-alive connections, no header or body rewriting.

    Idle connections are closed after `idle_timeout_s`, which must stay below the upstream's
    own keep-alive timeout: then the gateway never writes a call to a connection the upstream
    is closing at that moment.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        ttl_dns_cache=300,
        keepalive_timeout=idle_timeout_s,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # One session serves every app: a jar would hand one app's upstream cookies to the next.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        # Pass the caller's headers as they are instead of adding aiohttp's defaults.
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )


class UpstreamProxy:
    """Relays calls to the platform API; raises UpstreamError on connection failure or timeout."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        parts = urlsplit(self._base)
        self._origin = f"{parts.scheme}://{parts.netloc}".encode("latin-1")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

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
        target = self._base + raw_path
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
            async with self._session.request(
                method,
                URL(target, encoded=True),
                headers=outgoing,
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                returned = downstream_response_headers(
                    response.raw_headers, request_id, self._origin
                )
                returned += extra_headers
                length = response.content_length
                if length is not None and length <= BUFFER_LIMIT:
                    payload = await response.read()
                    returned.append((b"content-length", b"%d" % len(payload)))
                    started = True
                    await send(
                        {
                            "type": "http.response.start",
                            "status": response.status,
                            "headers": returned,
                        }
                    )
                    await send({"type": "http.response.body", "body": payload})
                    return response.status, len(payload)
                started = True
                await send(
                    {"type": "http.response.start", "status": response.status, "headers": returned}
                )
                sent = 0
                async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                    sent += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return response.status, sent
        except TimeoutError:
            raise UpstreamError(timeout=True, response_started=started) from None
        except aiohttp.ClientError:
            raise UpstreamError(timeout=False, response_started=started) from None
