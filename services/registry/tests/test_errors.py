"""The one JSON error shape: a caller that hangs up mid-request is not an internal error."""

import logging
from collections.abc import MutableMapping
from typing import Any

import pytest
from fastapi import FastAPI, Request

from capps_registry.errors import CLIENT_CLOSED_REQUEST, install_error_handlers


def app_reading_its_body() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


async def call(app: FastAPI, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", b"100")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8080),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


async def test_a_caller_gone_mid_body_is_logged_as_such_not_as_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="capps_registry")
    partial = {"type": "http.request", "body": b"x" * 10, "more_body": True}
    sent = await call(app_reading_its_body(), [partial, {"type": "http.disconnect"}])
    assert sent[0]["status"] == CLIENT_CLOSED_REQUEST
    assert "caller disconnected" in caplog.text
    assert "unhandled error" not in caplog.text


async def test_a_whole_body_is_still_served() -> None:
    whole = {"type": "http.request", "body": b"x" * 100, "more_body": False}
    sent = await call(app_reading_its_body(), [whole])
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"bytes":100}'
