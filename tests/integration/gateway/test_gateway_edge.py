"""The hardened edge, each rule as a negative test against a real gateway process.

Encoded slashes refused, steering headers stripped, X-Forwarded-* set by the gateway, upstream
origin not leaked, 431 on a huge head, slowloris heads and bodies cut off, 503 when full.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .conftest import ALL_ROLES, Gateway, Signer, StartGateway, _serve, metric_sample

pytestmark = pytest.mark.integration

SLOW_S = 5.0


@pytest.fixture(scope="module")
async def echo_upstream() -> AsyncIterator[dict[str, Any]]:
    """An upstream that echoes what it got, redirects to its own origin, is slow on one route."""
    seen: dict[str, Any] = {"paths": []}

    async def echo(request: web.Request) -> web.Response:
        seen["paths"].append(request.raw_path)
        return web.json_response({"headers": dict(request.headers), "path": request.raw_path})

    async def redirect(request: web.Request) -> web.Response:
        origin = f"http://{request.host}"
        response = web.json_response({}, status=302)
        response.headers["Location"] = f"{origin}/api/alerts/{request.match_info['id']}"
        response.headers["Set-Cookie"] = f"sid=1; Domain={request.url.host}; Path=/"
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_S)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/api/alerts", echo)
    app.router.add_get("/api/machines/{id}", echo)
    app.router.add_get("/api/alerts/{id}", redirect)
    app.router.add_post("/api/advancedqueries/run", slow)
    async with _serve(app) as url:
        seen["url"] = url
        yield seen


@pytest.fixture(scope="module")
async def edge_gateway(start_gateway: StartGateway, echo_upstream: dict[str, Any]) -> Gateway:
    return await start_gateway(
        echo_upstream["url"],
        extra_env={
            "GATEWAY_HEADER_TIMEOUT_S": "1",
            "GATEWAY_BODY_TIMEOUT_S": "1",
            "GATEWAY_MAX_IN_FLIGHT": "2",
            "GATEWAY_MAX_HEADER_BYTES": "16384",
        },
    )


@pytest.fixture
def auth(signer: Signer) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token(ALL_ROLES)}"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/machines/x%2F..%2F..%2Falerts",
        "/api/machines/x%2f..%2falerts",
        "/api/machines/x%5C..%5Calerts",
        "/api/machines/x%00",
    ],
)
async def test_an_encoded_slash_backslash_or_nul_in_a_path_is_refused(
    edge_gateway: Gateway,
    echo_upstream: dict[str, Any],
    auth: dict[str, str],
    http: aiohttp.ClientSession,
    path: str,
) -> None:
    async with http.get(edge_gateway.url + path, headers=auth, allow_redirects=False) as response:
        body = await response.json()
        assert response.status == 400
    assert body["error"]["code"] == "invalid_path"
    assert path not in echo_upstream["paths"]


async def test_steering_headers_are_stripped_and_forwarded_ones_set_by_the_gateway(
    edge_gateway: Gateway, auth: dict[str, str], http: aiohttp.ClientSession
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    sent = {
        **auth,
        "X-Original-URL": "/api/machines/1/isolate",
        "X-Rewrite-URL": "/api/machines/1/isolate",
        "X-HTTP-Method-Override": "DELETE",
        "Forwarded": "for=10.9.9.9",
        "X-Forwarded-For": "10.9.9.9",
        "X-Forwarded-Host": "evil.example",
        "X_Capps_App_Id": "forged-app",
        "X-Capps-Admin": "1",
        "traceparent": traceparent,
    }
    async with http.get(f"{edge_gateway.url}/api/alerts", headers=sent) as response:
        assert response.status == 200
        got = {name.lower(): value for name, value in (await response.json())["headers"].items()}
    for name in (
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "forwarded",
        "x_capps_app_id",
        "x-capps-admin",
        "authorization",
    ):
        assert name not in got, name
    assert got["x-forwarded-for"] == "127.0.0.1"
    assert got["x-forwarded-host"] == edge_gateway.url.removeprefix("http://")
    assert got["x-forwarded-proto"] == "http"
    assert got["x-capps-app-id"] != "forged-app"
    assert got["traceparent"] == traceparent


async def test_the_upstream_origin_does_not_leak_through_location_or_set_cookie(
    edge_gateway: Gateway,
    echo_upstream: dict[str, Any],
    auth: dict[str, str],
    http: aiohttp.ClientSession,
) -> None:
    async with http.get(
        f"{edge_gateway.url}/api/alerts/7", headers=auth, allow_redirects=False
    ) as response:
        assert response.status == 302
        assert response.headers["Location"] == "/api/alerts/7"
        cookie = response.headers["Set-Cookie"]
    assert "domain" not in cookie.lower()
    assert echo_upstream["url"] not in cookie


async def raw_exchange(gateway: Gateway, payload: bytes) -> bytes:
    """Send raw bytes, then read until the gateway closes the connection (generous deadline)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_an_oversized_header_answers_431(
    edge_gateway: Gateway, auth: dict[str, str], http: aiohttp.ClientSession
) -> None:
    headers = {**auth, "X-Big": "a" * 100_000}
    answer = await raw_exchange(
        edge_gateway,
        b"GET /api/alerts HTTP/1.1\r\nHost: x\r\n"
        + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        + b"\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b'"code":"header_too_large"' in answer


async def test_half_sent_heads_are_closed_after_the_header_timeout(edge_gateway: Gateway) -> None:
    # Slowloris: 50 connections each sending part of a head and then nothing.
    answers = await asyncio.gather(
        *(
            raw_exchange(edge_gateway, b"GET /api/alerts HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            for _ in range(50)
        )
    )
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert b'"code":"request_timeout"' in answer


async def test_a_body_that_stops_arriving_is_cut_off(
    edge_gateway: Gateway, auth: dict[str, str]
) -> None:
    head = (
        b"POST /api/advancedqueries/run HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: {auth['Authorization']}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    answer = await raw_exchange(edge_gateway, head + b'{"query": "')
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_past_the_in_flight_limit_calls_get_a_clear_503(
    edge_gateway: Gateway, auth: dict[str, str], http: aiohttp.ClientSession
) -> None:
    # Three calls that each hold the upstream for seconds, against a limit of two in flight.
    async def slow_call() -> tuple[int, str | None, Any]:
        async with http.post(
            f"{edge_gateway.url}/api/advancedqueries/run", headers=auth, json={"query": "x"}
        ) as response:
            return response.status, response.headers.get("Retry-After"), await response.json()

    calls = asyncio.gather(*(slow_call() for _ in range(3)))
    # While two are held upstream, the admin port shows them, and their connections.
    in_progress = "capps_gateway_calls_in_progress"
    await _until(lambda: metric_sample(http, edge_gateway, in_progress), lambda v: v == 2)
    assert await metric_sample(http, edge_gateway, "capps_gateway_connections") >= 2
    answers = sorted(await calls, key=lambda a: a[0])
    assert [status for status, _, _ in answers] == [200, 200, 503]
    _, retry_after, body = answers[2]
    assert retry_after == "1"
    assert body["error"]["code"] == "overloaded"
    await _until(lambda: metric_sample(http, edge_gateway, in_progress), lambda v: v == 0)


async def _until(read: Callable[[], Awaitable[float]], done: Callable[[float], bool]) -> None:
    """Scrape until `done` holds: gauges have no event to wait for (a generous deadline)."""
    deadline = time.monotonic() + 20
    while True:
        value = await read()
        if done(value):
            return
        assert time.monotonic() < deadline, f"the gauge stayed at {value}"
        await asyncio.sleep(0.05)
