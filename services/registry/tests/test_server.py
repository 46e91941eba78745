"""The server's own limits on a real socket: half-sent heads are closed, huge heads refused."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from capps_registry.server import HeaderTimeoutProtocol


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal ASGI app."""
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"hi"})


class FastTimeout(HeaderTimeoutProtocol):
    header_read_timeout_s = 0.3


@pytest.fixture
async def port() -> AsyncIterator[int]:
    config = uvicorn.Config(
        hello, host="127.0.0.1", port=0, http=FastTimeout, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
        await asyncio.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    await task


async def test_a_half_sent_head_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await writer.drain()
    # The server closes it: EOF arrives (a generous deadline, not a timing assertion).
    assert await asyncio.wait_for(reader.read(), timeout=30) == b""
    writer.close()
    await writer.wait_closed()


async def test_a_silent_connection_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), timeout=30) == b""
    writer.close()
    await writer.wait_closed()


async def test_a_complete_request_is_served_and_kept_alive(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(2) == b"hi"
    writer.close()
    await writer.wait_closed()


async def test_a_huge_head_is_refused(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    assert answer.startswith(b"HTTP/1.1 431")
    assert answer.endswith(b"}}")
    writer.close()
    await writer.wait_closed()
