"""The gateway's own answers: JSON error bodies `{"error": {code, message, target}}` and headers."""

from dataclasses import dataclass

from capps_kit.asgi import error_body

WWW_AUTH_MISSING = b"Bearer"
WWW_AUTH_INVALID = b'Bearer error="invalid_token"'
WWW_AUTH_SCOPE = b'Bearer error="insufficient_scope"'


@dataclass(frozen=True, slots=True)
class GatewayError:
    """One refusal: status, machine-readable code, human message, and any extra headers."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


def missing_token() -> GatewayError:
    """No bearer token: RFC 6750 §3.1 says answer without an error code."""
    return GatewayError(
        401,
        "missing_token",
        "a bearer access token is required",
        ((b"www-authenticate", WWW_AUTH_MISSING),),
    )


def invalid_token(reason: str) -> GatewayError:
    """A token that is malformed, forged, expired or not meant for this API."""
    return GatewayError(
        401,
        "invalid_token",
        f"invalid access token: {reason}",
        ((b"www-authenticate", WWW_AUTH_INVALID),),
    )


def insufficient_scope(permission: str) -> GatewayError:
    """A valid token whose app lacks the route's permission."""
    return GatewayError(
        403,
        "insufficient_scope",
        f"this route needs the {permission} permission",
        ((b"www-authenticate", WWW_AUTH_SCOPE),),
    )


def app_disabled() -> GatewayError:
    """A valid token of an app its tenant's admin has disabled."""
    return GatewayError(403, "app_disabled", "this app is disabled by its tenant's admin")


def not_found(method: str, path: str) -> GatewayError:
    """A call to no route of the catalog."""
    return GatewayError(404, "not_found", f"no route {method} {path}")


def invalid_path(reason: str) -> GatewayError:
    """400: a path the gateway will not forward (it could route differently upstream)."""
    return GatewayError(400, "invalid_path", reason)


def overloaded(limit: int) -> GatewayError:
    """503: the gateway is at its limit of calls in progress; retry shortly."""
    return GatewayError(
        503,
        "overloaded",
        f"the gateway is serving its maximum of {limit} calls at once; retry shortly",
        ((b"retry-after", b"1"),),
    )


def keys_unavailable() -> GatewayError:
    """The signing keys are not loaded yet, so no token can be judged either way."""
    return GatewayError(
        503,
        "unavailable",
        "the gateway cannot verify tokens yet; retry shortly",
        ((b"retry-after", b"1"),),
    )


def payload_too_large(limit: int) -> GatewayError:
    """A request body over the gateway's limit."""
    return GatewayError(413, "payload_too_large", f"request body exceeds {limit} bytes")


def bad_gateway() -> GatewayError:
    """The upstream refused the connection or broke it."""
    return GatewayError(502, "bad_gateway", "the upstream API could not be reached")


def gateway_timeout(timeout_s: float) -> GatewayError:
    """The upstream did not answer in time."""
    message = f"the upstream API did not answer in {timeout_s:g} s"
    return GatewayError(504, "gateway_timeout", message)


def rate_limited(window_headers: list[tuple[bytes, bytes]]) -> GatewayError:
    """429: the app used its calls of the window; the headers say how long to wait."""
    return GatewayError(
        429,
        "rate_limited",
        "the app's rate limit is used up; retry after the Retry-After seconds",
        tuple(window_headers),
    )


def render(error: GatewayError, request_id: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Response headers (without the length, which the edge frames) and body of an error;
    `target` is the request id."""
    body = error_body(error.code, error.message, request_id)
    headers = [
        (b"content-type", b"application/json"),
        (b"x-request-id", request_id.encode("latin-1")),
        *error.headers,
    ]
    return headers, body
