"""The gateway's HTTP/1.1 edge on a real loopback socket, spoken to byte by byte.

The limits (431, 408, slowloris) are tested against the whole gateway in
tests/integration/gateway/test_gateway_edge.py; these tests hold the connection handling a
caller relies on: keep-alive, pipelining, 100-continue, chunked bodies, HEAD, closes, drain.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest

from capps_gateway.call import BodyTooLargeError, Call, Handler
from capps_gateway.edge import Edge, EdgeLimits

DEADLINE_S = 10.0


async def _echo(call: Call) -> None:
    """Answers with what it read: method, path, query and body size."""
    body = await call.body()
    payload = orjson.dumps(
        {"method": call.method, "path": call.path, "query": call.query.decode(), "size": len(body)}
    )
    call.respond(200, [(b"content-type", b"application/json")], payload)


class _Server:
    def __init__(self, edge: Edge, server: asyncio.Server) -> None:
        self.edge = edge
        self.server = server
        self.port: int = server.sockets[0].getsockname()[1]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def _serve(handler: Handler, limits: EdgeLimits | None = None) -> _Server:
    edge = Edge(handler, limits or EdgeLimits())
    server = await asyncio.get_running_loop().create_server(edge.protocol, "127.0.0.1", 0)
    return _Server(edge, server)


@pytest.fixture
async def echo() -> AsyncIterator[_Server]:
    served = await _serve(_echo)
    yield served
    served.server.close()
    await served.edge.drain(DEADLINE_S)


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One answer: status line, headers (names lower-case), body (by length or chunks)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
    status, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), 10)
    elif headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), DEADLINE_S))[:-2], 16)
            chunk = await asyncio.wait_for(reader.readexactly(size + 2), DEADLINE_S)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    return status, headers, body


async def _closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), DEADLINE_S) == b""


async def test_keep_alive_serves_several_calls_on_one_connection(echo: _Server) -> None:
    reader, writer = await echo.connect()
    for n in range(3):
        writer.write(b"GET /api/alerts/%d?x=%d HTTP/1.1\r\nhost: gw\r\n\r\n" % (n, n))
        status, headers, body = await _answer(reader)
        assert status == b"HTTP/1.1 200 OK"
        assert headers[b"date"]
        assert orjson.loads(body) == {
            "method": "GET",
            "path": f"/api/alerts/{n}",
            "query": f"x={n}",
            "size": 0,
        }
    writer.close()


async def test_pipelined_calls_are_answered_in_order() -> None:
    order: list[str] = []

    async def slow_first(call: Call) -> None:
        # The first call finishes after the second arrived: its answer must still come first.
        if call.path == "/first":
            await asyncio.sleep(0.05)
        order.append(call.path)
        call.respond(200, [], call.path.encode())

    served = await _serve(slow_first)
    reader, writer = await served.connect()
    writer.write(b"GET /first HTTP/1.1\r\nhost: gw\r\n\r\nGET /second HTTP/1.1\r\nhost: gw\r\n\r\n")
    assert (await _answer(reader))[2] == b"/first"
    assert (await _answer(reader))[2] == b"/second"
    assert order == ["/first", "/second"]
    writer.close()
    served.server.close()
    await served.edge.drain(DEADLINE_S)


async def test_expect_100_continue_is_answered_before_the_body_is_sent(echo: _Server) -> None:
    reader, writer = await echo.connect()
    writer.write(
        b"POST /upload HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    status, _, body = await _answer(reader)
    assert status == b"HTTP/1.1 200 OK"
    assert orjson.loads(body)["size"] == 5
    writer.close()


async def test_a_chunked_request_body_is_read_whole(echo: _Server) -> None:
    reader, writer = await echo.connect()
    writer.write(
        b"POST /upload HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    assert orjson.loads((await _answer(reader))[2])["size"] == 7
    writer.close()


async def test_connection_close_and_http_1_0_close_after_the_answer(echo: _Server) -> None:
    for request in (
        b"GET /a HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
        b"GET /a HTTP/1.0\r\n\r\n",
    ):
        reader, writer = await echo.connect()
        writer.write(request)
        status, headers, _ = await _answer(reader)
        assert status.endswith(b"200 OK")
        assert headers[b"connection"] == b"close"
        assert await _closed(reader)
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    served = await _serve(_echo, EdgeLimits(keep_alive_s=0.2))
    reader, writer = await served.connect()
    writer.write(b"GET /a HTTP/1.1\r\nhost: gw\r\n\r\n")
    await _answer(reader)
    assert await _closed(reader)
    writer.close()
    served.server.close()
    await served.edge.drain(DEADLINE_S)


async def test_head_gets_the_length_without_a_body(echo: _Server) -> None:
    reader, writer = await echo.connect()
    writer.write(b"HEAD /a HTTP/1.1\r\nhost: gw\r\n\r\nGET /b HTTP/1.1\r\nhost: gw\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
    assert b"content-length: " in head
    # The next bytes are the second answer, not a body of the first.
    status, _, body = await _answer(reader)
    assert status == b"HTTP/1.1 200 OK"
    assert orjson.loads(body)["path"] == "/b"
    writer.close()


async def test_a_streamed_answer_arrives_chunked_and_whole() -> None:
    async def stream(call: Call) -> None:
        call.start(200, [(b"content-type", b"text/plain")])
        for part in (b"one,", b"two,", b"three"):
            await call.send(part)
        call.finish()

    served = await _serve(stream)
    reader, writer = await served.connect()
    writer.write(b"GET /s HTTP/1.1\r\nhost: gw\r\n\r\n")
    _, headers, body = await _answer(reader)
    assert headers[b"transfer-encoding"] == b"chunked"
    assert body == b"one,two,three"
    writer.close()
    served.server.close()
    await served.edge.drain(DEADLINE_S)


async def test_a_failing_handler_answers_500_json_and_closes() -> None:
    async def broken(call: Call) -> None:
        raise RuntimeError("boom")

    served = await _serve(broken)
    reader, writer = await served.connect()
    writer.write(b"GET /x HTTP/1.1\r\nhost: gw\r\n\r\n")
    status, _, body = await _answer(reader)
    assert status.startswith(b"HTTP/1.1 500")
    assert orjson.loads(body)["error"]["code"] == "internal_error"
    assert b"boom" not in body
    assert await _closed(reader)
    writer.close()
    served.server.close()
    await served.edge.drain(DEADLINE_S)


async def test_an_upgrade_or_malformed_request_is_refused_with_json(echo: _Server) -> None:
    for request, code in (
        (
            b"GET /ws HTTP/1.1\r\nhost: gw\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            "upgrade_refused",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", "bad_request"),
    ):
        reader, writer = await echo.connect()
        writer.write(request)
        status, headers, body = await _answer(reader)
        assert status.startswith(b"HTTP/1.1 400")
        assert headers[b"connection"] == b"close"
        assert orjson.loads(body)["error"]["code"] == code
        writer.close()


async def test_drain_finishes_the_call_in_progress_and_closes_idle_connections() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def waits(call: Call) -> None:
        started.set()
        await release.wait()
        call.respond(200, [], b"done")

    served = await _serve(waits)
    busy_reader, busy_writer = await served.connect()
    idle_reader, idle_writer = await served.connect()
    busy_writer.write(b"GET /x HTTP/1.1\r\nhost: gw\r\n\r\n")
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    served.server.close()
    draining = asyncio.create_task(served.edge.drain(DEADLINE_S))
    assert await _closed(idle_reader)
    assert not draining.done()
    release.set()
    status, headers, body = await _answer(busy_reader)
    assert (status, body) == (b"HTTP/1.1 200 OK", b"done")
    assert headers[b"connection"] == b"close"
    await asyncio.wait_for(draining, DEADLINE_S)
    busy_writer.close()
    idle_writer.close()


async def test_a_body_is_held_in_the_callers_socket_until_the_call_reads_it() -> None:
    # A call that does not read its body yet (checking the token, the rate limit) must not
    # let a caller fill the gateway's memory: past a few buffered KB the edge stops reading.
    ready = asyncio.Event()
    buffered: list[int] = []

    async def slow_reader(call: Call) -> None:
        await ready.wait()
        buffered.append(call._body_size)  # what the edge buffered meanwhile
        body = await call.body()
        call.respond(200, [], b"%d" % len(body))

    served = await _serve(slow_reader)
    reader, writer = await served.connect()
    size = 8 * 1024 * 1024
    writer.write(b"POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: %d\r\n\r\n" % size)
    writer.write(b"x" * size)
    # Given a second, the edge would have read all 8 MB from loopback had it not held them.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(writer.drain(), 1.0)
    ready.set()
    await asyncio.wait_for(writer.drain(), DEADLINE_S)
    _, _, body = await _answer(reader)
    assert body == b"%d" % size
    assert buffered[0] < size // 2
    writer.close()
    served.server.close()
    await served.edge.drain(DEADLINE_S)


async def test_a_body_over_the_limit_is_refused_without_being_buffered() -> None:
    refused: list[str] = []

    async def reads(call: Call) -> None:
        try:
            await call.body()
        except BodyTooLargeError:
            refused.append(call.path)
            call.respond(413, [], b"too large")
            return
        call.respond(200, [], b"ok")

    served = await _serve(reads, EdgeLimits(max_body_bytes=1000))
    # Declared too large: refused before a byte of it is read.
    reader, writer = await served.connect()
    writer.write(b"POST /declared HTTP/1.1\r\nhost: gw\r\ncontent-length: 5000\r\n\r\n")
    status, headers, _ = await _answer(reader)
    assert status.startswith(b"HTTP/1.1 413")
    assert headers[b"connection"] == b"close"
    writer.close()
    # Chunked, so only the bytes tell: refused once they pass the limit.
    reader, writer = await served.connect()
    writer.write(b"POST /chunked HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n")
    writer.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
    status, _, _ = await _answer(reader)
    assert status.startswith(b"HTTP/1.1 413")
    assert refused == ["/declared", "/chunked"]
    writer.close()
    served.server.close()
    await served.edge.drain(DEADLINE_S)


async def test_drain_drops_what_outlasts_its_grace_and_waits_for_the_calls() -> None:
    release = asyncio.Event()
    started = asyncio.Event()
    ended: list[str] = []

    async def stuck(call: Call) -> None:
        started.set()
        await release.wait()
        call.respond(200, [], b"late")
        ended.append(call.path)

    served = await _serve(stuck)
    reader, writer = await served.connect()
    writer.write(b"GET /stuck HTTP/1.1\r\nhost: gw\r\n\r\n")
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    served.server.close()
    await asyncio.wait_for(served.edge.drain(0.2), DEADLINE_S)
    # The connection was dropped without an answer; the call's task is still tracked.
    assert await _closed(reader)
    assert len(served.edge.tasks) == 1
    release.set()
    await asyncio.wait_for(asyncio.gather(*served.edge.tasks), DEADLINE_S)
    assert ended == ["/stuck"]
    assert not served.edge.tasks
    writer.close()


async def test_a_call_refused_before_its_body_still_reaches_a_caller_sending_it() -> None:
    async def refuses(call: Call) -> None:
        # As a call with a bad token: answered without reading the body.
        call.respond(401, [], b"no")

    served = await _serve(refuses)
    reader, writer = await served.connect()
    size = 2 * 1024 * 1024
    writer.write(b"POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: %d\r\n\r\n" % size)
    writer.write(b"z" * size)
    status, headers, body = await _answer(reader)
    assert (status, body) == (b"HTTP/1.1 401 Unauthorized", b"no")
    assert headers[b"connection"] == b"close"
    # The edge reads and drops the rest while it lingers, so the caller's send completes
    # instead of stalling against a held socket that would reset when closed.
    await asyncio.wait_for(writer.drain(), DEADLINE_S)
    assert await _closed(reader)
    writer.close()
    served.server.close()
    await served.edge.drain(DEADLINE_S)
