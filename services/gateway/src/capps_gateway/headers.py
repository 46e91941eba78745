"""Pure header handling: request ids, bearer tokens, and what crosses the proxy each way."""

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

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
# The caller must not forge the identity headers the upstream trusts, nor send its token on,
# nor steer the upstream's routing or method (X-Original-URL and friends), nor claim a client
# address: the gateway sets X-Forwarded-* itself. Compared after folding `_` to `-`, since many
# servers treat `X_Capps_App_Id` as `X-Capps-App-Id`.
_NOT_FORWARDED = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"authorization",
    b"x-request-id",
    b"x-original-url",
    b"x-rewrite-url",
    b"x-original-method",
    b"x-http-method-override",
    b"x-http-method",
    b"x-method-override",
    b"forwarded",
    b"x-real-ip",
    b"x-client-ip",
    b"true-client-ip",
}
_NOT_FORWARDED_PREFIXES = (b"x-capps-", b"x-forwarded-")
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


def _dropped_names(
    headers: Iterable[tuple[bytes, bytes]], always: frozenset[bytes]
) -> frozenset[bytes]:
    """`always` plus the names the message's Connection header lists (RFC 9110 §7.6.1)."""
    named: set[bytes] | None = None
    for name, value in headers:
        if name.lower() == b"connection":
            tokens = {token.strip().lower() for token in value.split(b",")}
            named = tokens if named is None else named | tokens
    # Most messages name nothing new (`Connection: keep-alive` is hop-by-hop already).
    if named is None or named <= always:
        return always
    return always | named


def _dropped(name: bytes, dropped: frozenset[bytes]) -> bool:
    folded = name.lower().replace(b"_", b"-")
    return folded in dropped or folded.startswith(_NOT_FORWARDED_PREFIXES)


def upstream_request_headers(
    headers: Iterable[tuple[bytes, bytes]],
    request_id: str,
    app_id: str,
    tenant_id: str,
    *,
    client_ip: str = "",
    scheme: str = "http",
) -> list[tuple[bytes, bytes]]:
    """The caller's headers minus hop-by-hop, Authorization and steering ones, plus the
    gateway's identity and X-Forwarded-For/-Proto/-Host (the caller as the gateway saw it)."""
    dropped = _dropped_names(headers, _NOT_FORWARDED)
    forwarded: list[tuple[bytes, bytes]] = []
    host = b""
    for name, value in headers:
        if name == b"host":
            host = value
        if not _dropped(name, dropped):
            forwarded.append((name, value))
    forwarded += [
        (b"X-Request-Id", request_id.encode("latin-1")),
        (b"X-Capps-App-Id", app_id.encode("latin-1")),
        (b"X-Capps-Tenant-Id", tenant_id.encode("latin-1")),
        (b"X-Forwarded-Proto", scheme.encode("latin-1")),
    ]
    if client_ip:
        forwarded.append((b"X-Forwarded-For", client_ip.encode("latin-1")))
    if host:
        forwarded.append((b"X-Forwarded-Host", host))
    return forwarded


def downstream_response_headers(
    raw_headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]],
    request_id: str,
    upstream_origin: bytes = b"",
) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers, lower-cased for ASGI, minus hop-by-hop; plus the id.

    A `Location` on the upstream's own origin becomes a path on the gateway's, and a
    `Set-Cookie` scoped to the upstream's host loses that `Domain`: callers never learn the
    internal address, and the cookie belongs to the host they called.
    """
    dropped = _dropped_names(raw_headers, _NOT_RETURNED)
    returned: list[tuple[bytes, bytes]] = []
    for raw_name, raw_value in raw_headers:
        name = raw_name.lower()
        if name in dropped:
            continue
        value = raw_value
        if upstream_origin and name == b"location":
            value = relative_location(raw_value, upstream_origin)
        elif upstream_origin and name == b"set-cookie":
            value = cookie_without_domain(raw_value, upstream_host(upstream_origin))
        returned.append((name, value))
    returned.append((b"x-request-id", request_id.encode("ascii")))
    return returned


def upstream_host(origin: bytes) -> bytes:
    """The host name of an origin like `http://api.internal:8090`."""
    return (urlsplit(origin.decode("latin-1")).hostname or "").encode("latin-1")


def relative_location(value: bytes, upstream_origin: bytes) -> bytes:
    """`Location` made relative when it points at the upstream's origin (any case)."""
    origin = upstream_origin.rstrip(b"/")
    if value[: len(origin)].lower() != origin.lower():
        return value
    rest = value[len(origin) :]
    if not rest:
        return b"/"
    return rest if rest[:1] in {b"/", b"?", b"#"} else value


def cookie_without_domain(value: bytes, host: bytes) -> bytes:
    """A Set-Cookie value minus a `Domain` attribute naming the upstream's host."""
    if not host:
        return value
    parts = value.split(b";")
    kept = [parts[0]]
    for attribute in parts[1:]:
        name, _, domain = attribute.strip().partition(b"=")
        if name.lower() == b"domain" and domain.strip().lstrip(b".").lower() == host.lower():
            continue
        kept.append(attribute)
    return b";".join(kept)
