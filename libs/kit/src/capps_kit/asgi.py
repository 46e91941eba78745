"""The ASGI shapes our raw ASGI apps share, and the one JSON error body every service answers.

Every error a client sees, from any service, is `{"error": {"code", "message", "target"}}`,
where `target` is the request id (or null where there is none), per DESIGN.md.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

# Mutable mappings, as in the ASGI spec and Starlette, so one alias fits both our raw apps
# and a framework's app wrapped in tests.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def ack_lifespan(receive: Receive, send: Send) -> None:
    """Answer the ASGI lifespan protocol for an app with nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def error_payload(code: str, message: str, target: str | None) -> dict[str, dict[str, Any]]:
    """The error body as a mapping (for frameworks that serialise it themselves)."""
    return {"error": {"code": code, "message": message, "target": target}}


def error_body(code: str, message: str, target: str | None) -> bytes:
    """The error body as JSON bytes."""
    return orjson.dumps(error_payload(code, message, target))
