"""Pure header handling: request ids, bearer tokens, and what crosses the proxy each way."""

import re

# RFC 9110 §7.6.1 hop-by-hop fields, plus the ones the gateway sets or must not leak upstream.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    }
)
# The caller must not forge the identity headers the upstream trusts, nor send its token on.
_NOT_FORWARDED = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"authorization",
    b"x-request-id",
    b"x-capps-app-id",
    b"x-capps-tenant-id",
}
# The gateway frames the body itself, and uvicorn adds its own date.
_NOT_RETURNED = HOP_BY_HOP | {b"content-length", b"date", b"server", b"x-request-id"}

_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


def sane_request_id(value: bytes | None) -> str | None:
    """The caller's X-Request-Id if it is short printable ASCII (safe to log and echo)."""
    if value is None or not _SANE_REQUEST_ID.fullmatch(value):
        return None
    return value.decode("ascii")


def bearer_token(value: bytes | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is no bearer."""
    if value is None:
        return None
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip().decode("latin-1")


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return frozenset(named)


def upstream_request_headers(
    headers: list[tuple[bytes, bytes]], request_id: str, app_id: str, tenant_id: str
) -> list[tuple[str, str]]:
    """The caller's headers minus hop-by-hop and Authorization, plus the gateway's identity ones."""
    dropped = _NOT_FORWARDED | _connection_tokens(headers)
    forwarded = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in headers
        if name.lower() not in dropped
    ]
    forwarded += [
        ("X-Request-Id", request_id),
        ("X-Capps-App-Id", app_id),
        ("X-Capps-Tenant-Id", tenant_id),
    ]
    return forwarded


def downstream_response_headers(
    raw_headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]], request_id: str
) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers, lower-cased for ASGI, minus hop-by-hop; plus the id."""
    dropped = _NOT_RETURNED | _connection_tokens(list(raw_headers))
    returned = [(name.lower(), value) for name, value in raw_headers if name.lower() not in dropped]
    returned.append((b"x-request-id", request_id.encode("ascii")))
    return returned
