"""Header handling across the proxy, request ids, bearer parsing, and error answers."""

import orjson
import pytest

from capps_gateway import errors
from capps_gateway.headers import (
    bearer_token,
    downstream_response_headers,
    sane_request_id,
    upstream_request_headers,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"abc-123", "abc-123"),
        (b"0190f0c2-7d3e-7b4a-9c1d-3f2e1a0b9c8d", "0190f0c2-7d3e-7b4a-9c1d-3f2e1a0b9c8d"),
        (b"trace:span/1+x=@y.z_", "trace:span/1+x=@y.z_"),
        (None, None),
        (b"", None),
        (b"a" * 129, None),
        (b"has space", None),
        (b"new\nline", None),
        (b'quote"', None),
        ("é".encode(), None),
    ],
)
def test_sane_request_id(value: bytes | None, expected: str | None) -> None:
    assert sane_request_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Bearer abc.def.ghi", "abc.def.ghi"),
        (b"bearer   abc", "abc"),
        (b"BEARER x", "x"),
        (b"Bearer ", ""),
        (b"Basic dXNlcjpwYXNz", None),
        (b"Bearerabc", None),
        (None, None),
    ],
)
def test_bearer_token(value: bytes | None, expected: str | None) -> None:
    assert bearer_token(value) == expected


def test_upstream_headers_drop_hop_by_hop_auth_and_forged_identity() -> None:
    incoming = [
        (b"host", b"gateway:8000"),
        (b"authorization", b"Bearer secret"),
        (b"connection", b"keep-alive, X-Custom-Hop"),
        (b"keep-alive", b"timeout=5"),
        (b"x-custom-hop", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"te", b"trailers"),
        (b"upgrade", b"h2c"),
        (b"proxy-authorization", b"Basic x"),
        (b"content-length", b"12"),
        (b"x-request-id", b"caller-id"),
        (b"x-capps-app-id", b"forged-app"),
        (b"x-capps-tenant-id", b"forged-tenant"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"x-trace", b"t1"),
    ]
    out = upstream_request_headers(incoming, "req-1", "app-1", "tenant-1")
    assert out == [
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"x-trace", b"t1"),
        (b"X-Request-Id", b"req-1"),
        (b"X-Capps-App-Id", b"app-1"),
        (b"X-Capps-Tenant-Id", b"tenant-1"),
        (b"X-Forwarded-Proto", b"http"),
        (b"X-Forwarded-Host", b"gateway:8000"),
    ]


def test_steering_and_spoofed_headers_are_dropped_and_forwarded_ones_set_by_the_gateway() -> None:
    incoming = [
        (b"host", b"api.example"),
        (b"x-original-url", b"/api/alerts"),
        (b"x-rewrite-url", b"/api/alerts"),
        (b"x-http-method-override", b"DELETE"),
        (b"x-method-override", b"DELETE"),
        (b"forwarded", b"for=10.0.0.1"),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"x-forwarded-host", b"evil.example"),
        (b"x-real-ip", b"10.0.0.1"),
        (b"x_capps_app_id", b"forged-app"),
        (b"x-capps-anything", b"forged"),
        (b"X_Forwarded_Proto", b"https"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ]
    out = upstream_request_headers(
        incoming, "req-1", "app-1", "tenant-1", client_ip="192.0.2.7", scheme="https"
    )
    assert out == [
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (b"X-Request-Id", b"req-1"),
        (b"X-Capps-App-Id", b"app-1"),
        (b"X-Capps-Tenant-Id", b"tenant-1"),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-For", b"192.0.2.7"),
        (b"X-Forwarded-Host", b"api.example"),
    ]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (b"http://10.1.2.3:8090/api/alerts/7?x=1", b"/api/alerts/7?x=1"),
        (b"HTTP://10.1.2.3:8090", b"/"),
        (b"http://10.1.2.3:8090.evil.example/x", b"http://10.1.2.3:8090.evil.example/x"),
        (b"https://elsewhere.example/x", b"https://elsewhere.example/x"),
        (b"/api/alerts", b"/api/alerts"),
    ],
)
def test_a_location_on_the_upstream_origin_becomes_a_path(location: bytes, expected: bytes) -> None:
    [(_, value), _] = downstream_response_headers(
        [(b"Location", location)], "req-1", b"http://10.1.2.3:8090"
    )
    assert value == expected


def test_a_cookie_scoped_to_the_upstream_host_loses_its_domain() -> None:
    headers = downstream_response_headers(
        [
            (b"Set-Cookie", b"a=1; Domain=10.1.2.3; Path=/; HttpOnly"),
            (b"Set-Cookie", b"b=2; domain=.partner.example; Secure"),
        ],
        "req-1",
        b"http://10.1.2.3:8090",
    )
    assert [value for name, value in headers if name == b"set-cookie"] == [
        b"a=1; Path=/; HttpOnly",
        b"b=2; domain=.partner.example; Secure",
    ]


def test_downstream_headers_are_lowercased_and_filtered() -> None:
    raw = (
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"10"),
        (b"Connection", b"keep-alive"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Date", b"Mon"),
        (b"Server", b"uvicorn"),
        (b"X-Request-Id", b"upstream-id"),
        (b"ETag", b'"v1"'),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    )
    assert downstream_response_headers(raw, "req-1") == [
        (b"content-type", b"application/json"),
        (b"etag", b'"v1"'),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"x-request-id", b"req-1"),
    ]


def test_downstream_drops_what_the_upstreams_connection_header_names() -> None:
    raw = (
        (b"Connection", b"keep-alive"),
        (b"connection", b"X-Internal-Hop"),
        (b"X-Internal-Hop", b"secret"),
        (b"ETag", b'"v1"'),
    )
    assert downstream_response_headers(raw, "req-1") == [
        (b"etag", b'"v1"'),
        (b"x-request-id", b"req-1"),
    ]


@pytest.mark.parametrize(
    ("error", "status", "code", "www_authenticate"),
    [
        (errors.missing_token(), 401, "missing_token", b"Bearer"),
        (
            errors.invalid_token("token expired"),
            401,
            "invalid_token",
            b'Bearer error="invalid_token"',
        ),
        (
            errors.insufficient_scope("Alert.Read.All"),
            403,
            "insufficient_scope",
            b'Bearer error="insufficient_scope"',
        ),
        (errors.not_found("GET", "/x"), 404, "not_found", None),
        (errors.bad_gateway(), 502, "bad_gateway", None),
        (errors.gateway_timeout(10), 504, "gateway_timeout", None),
        (errors.payload_too_large(10), 413, "payload_too_large", None),
    ],
)
def test_error_body_and_headers(
    error: errors.GatewayError, status: int, code: str, www_authenticate: bytes | None
) -> None:
    headers, body = errors.render(error, "req-9")
    found = dict(headers)
    assert error.status == status
    assert orjson.loads(body) == {
        "error": {"code": code, "message": error.message, "target": "req-9"}
    }
    assert found[b"content-type"] == b"application/json"
    # The edge frames the body: the error's headers carry no length of their own.
    assert b"content-length" not in found
    assert found[b"x-request-id"] == b"req-9"
    assert found.get(b"www-authenticate") == www_authenticate


def test_error_messages_name_the_problem() -> None:
    assert "token expired" in errors.invalid_token("token expired").message
    assert "Machine.Isolate" in errors.insufficient_scope("Machine.Isolate").message
    assert "10 s" in errors.gateway_timeout(10.0).message
