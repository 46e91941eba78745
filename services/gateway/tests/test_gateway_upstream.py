"""The relay's upstream client against a real local TCP server that answers scripted bytes.

Each test's server reads one request head at a time and writes what the test scripts, so the
client meets the answer shapes an upstream can send: sized, chunked, ended by the connection
closing, answers to HEAD, interim 1xx, oversized or malformed heads, and a server that hangs.
"""

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from capps_gateway.upstream import MAX_HEAD_BYTES, Exchange, UpstreamConnectionError, UpstreamPool

Script = Callable[[bytes], list[bytes]]
"""From one request's head, the pieces to write back: b"" closes the connection, HANG stalls."""

HANG = b"<hang>"


class ScriptedServer:
    """Accepts connections; per request head, writes the script's pieces in order."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                for piece in self.script(head):
                    if piece == HANG:
                        await asyncio.sleep(3600)
                    if piece == b"":
                        writer.close()
                        return
                    writer.write(piece)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


async def serve(script: Script) -> ScriptedServer:
    scripted = ScriptedServer(script)
    scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    return scripted


@pytest.fixture
async def closing() -> AsyncIterator[list[asyncio.Server | UpstreamPool]]:
    opened: list[asyncio.Server | UpstreamPool] = []
    yield opened
    for thing in opened:
        if isinstance(thing, UpstreamPool):
            await thing.close()
        else:
            thing.close()


async def pool_for(
    script: Script, opened: list[asyncio.Server | UpstreamPool], timeout_s: float = 5.0
) -> tuple[ScriptedServer, UpstreamPool]:
    scripted = await serve(script)
    assert scripted.server is not None
    pool = UpstreamPool(scripted.url, max_connections=4, idle_timeout_s=3.0, timeout_s=timeout_s)
    opened += [scripted.server, pool]
    return scripted, pool


def sized(body: bytes, status: bytes = b"200 OK") -> list[bytes]:
    return [b"HTTP/1.1 %s\r\ncontent-length: %d\r\nx-up: 1\r\n\r\n%s" % (status, len(body), body)]


async def test_sized_answers_reuse_one_connection_and_requests_are_framed(
    closing: list[asyncio.Server | UpstreamPool],
) -> None:
    scripted, pool = await pool_for(lambda head: sized(b'{"ok":true}'), closing)
    for n in range(3):
        answer = await pool.exchange("POST", f"/api/x?n={n}", [(b"x-a", b"b")], b"hello")
        assert answer.status == 200
        assert (b"x-up", b"1") in answer.headers
        assert await answer.read() == b'{"ok":true}'
        answer.finish()
    assert scripted.connections == 1
    first = scripted.requests[0]
    assert first.startswith(b"POST /api/x?n=0 HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in first
    assert b"\r\nx-a: b\r\n" in first
    assert first.endswith(b"content-length: 5\r\n\r\nhello")


async def test_chunked_answer_streams_whole(closing: list[asyncio.Server | UpstreamPool]) -> None:
    pieces = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    pieces += [b"%x\r\n%s\r\n" % (1000, b"a" * 1000) for _ in range(50)] + [b"0\r\n\r\n"]
    _, pool = await pool_for(lambda head: pieces, closing)
    answer = await pool.exchange("GET", "/big", [], b"")
    received = await _rest_of(answer)
    answer.finish()
    assert received == b"a" * 50_000


async def test_answer_ended_by_close_is_complete_and_not_reused(
    closing: list[asyncio.Server | UpstreamPool],
) -> None:
    scripted, pool = await pool_for(
        lambda head: [b"HTTP/1.1 200 OK\r\n\r\n", b"part one, ", b"part two", b""], closing
    )
    for _ in range(2):
        answer = await pool.exchange("GET", "/", [], b"")
        assert await _rest_of(answer) == b"part one, part two"
        answer.finish()
    assert scripted.connections == 2


async def test_answer_to_head_has_no_body(closing: list[asyncio.Server | UpstreamPool]) -> None:
    _, pool = await pool_for(
        lambda head: [b"HTTP/1.1 200 OK\r\ncontent-length: 7600\r\n\r\n"], closing
    )
    answer = await pool.exchange("HEAD", "/", [], b"")
    assert answer.complete
    assert await answer.read() == b""
    answer.finish()


async def test_interim_answer_is_skipped(closing: list[asyncio.Server | UpstreamPool]) -> None:
    _, pool = await pool_for(
        lambda head: [b"HTTP/1.1 100 Continue\r\n\r\n", *sized(b"done", b"201 Created")], closing
    )
    answer = await pool.exchange("PUT", "/", [], b"x")
    assert answer.status == 201
    assert await answer.read() == b"done"
    answer.finish()


async def test_oversized_head_is_refused(closing: list[asyncio.Server | UpstreamPool]) -> None:
    huge = b"x-big: " + b"v" * (MAX_HEAD_BYTES + 10) + b"\r\n"
    _, pool = await pool_for(lambda head: [b"HTTP/1.1 200 OK\r\n" + huge], closing)
    with pytest.raises(UpstreamConnectionError, match="head over"):
        await pool.exchange("GET", "/", [], b"")


async def test_malformed_answer_is_refused(closing: list[asyncio.Server | UpstreamPool]) -> None:
    _, pool = await pool_for(lambda head: [b"NOT HTTP AT ALL\r\n\r\n"], closing)
    with pytest.raises(UpstreamConnectionError, match="malformed"):
        await pool.exchange("GET", "/", [], b"")


async def test_closed_before_answer_is_a_connection_error(
    closing: list[asyncio.Server | UpstreamPool],
) -> None:
    _, pool = await pool_for(lambda head: [b""], closing)
    with pytest.raises(UpstreamConnectionError, match="closed"):
        await pool.exchange("GET", "/", [], b"")


async def test_a_hung_upstream_times_out_head_and_body(
    closing: list[asyncio.Server | UpstreamPool],
) -> None:
    _, pool = await pool_for(lambda head: [HANG], closing, timeout_s=0.3)
    with pytest.raises(TimeoutError):
        await pool.exchange("GET", "/", [], b"")
    _, slow_body = await pool_for(
        lambda head: [b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", HANG],
        closing,
        timeout_s=0.3,
    )
    answer = await slow_body.exchange("GET", "/", [], b"")
    with pytest.raises(TimeoutError):
        await answer.read()
    answer.finish()


async def test_unreachable_upstream_is_a_connection_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    pool = UpstreamPool(
        f"http://127.0.0.1:{port}", max_connections=1, idle_timeout_s=1.0, timeout_s=2.0
    )
    with pytest.raises(UpstreamConnectionError, match="cannot connect"):
        await pool.exchange("GET", "/", [], b"")


async def test_calls_beyond_the_pool_wait_for_a_free_connection(
    closing: list[asyncio.Server | UpstreamPool],
) -> None:
    scripted, pool = await pool_for(lambda head: sized(b"ok"), closing)

    async def call() -> bytes:
        answer = await pool.exchange("GET", "/", [], b"")
        try:
            return await answer.read()
        finally:
            answer.finish()

    assert await asyncio.gather(*(call() for _ in range(20))) == [b"ok"] * 20
    assert scripted.connections <= 4


async def _rest_of(answer: Exchange) -> bytes:
    """The answer's body read part by part, as the proxy streams it."""
    parts = []
    while (part := await answer.next_chunk()) is not None:
        parts.append(part)
    return b"".join(parts)
