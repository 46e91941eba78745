"""Limits before work: request bodies are bounded before a handler reads them.

A declared Content-Length over the limit is answered 413 at once, without reading the body;
a body sent without one (chunked) is counted as it streams and cut off at the limit.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from capps_kit.asgi import error_body
from capps_registry.errors import pick_request_id

OAUTH_PREFIX = "/oauth2/"


class BodyLimitMiddleware:
    """413 for a body over its limit: small for the OAuth forms, larger for the admin API."""

    def __init__(self, app: ASGIApp, *, form_max_bytes: int, json_max_bytes: int) -> None:
        self.app = app
        self.form_max_bytes = form_max_bytes
        self.json_max_bytes = json_max_bytes

    def limit_for(self, path: str) -> int:
        """The body limit of a path."""
        return self.form_max_bytes if path.startswith(OAUTH_PREFIX) else self.json_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or count the body of one HTTP request; other scopes pass through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await self._refuse(scope, send, limit)
                    return
                break
        seen = 0
        exceeded = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # The app gets an ended, cut body; whatever it answers is replaced below.
                    exceeded = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        refused = False

        async def replaced(message: Message) -> None:
            nonlocal refused
            if not exceeded:
                await send(message)
            elif not refused:
                refused = True
                await self._refuse(scope, send, limit)

        await self.app(scope, counted, replaced)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int) -> None:
        state = scope.get("state") or {}
        request_id = state.get("request_id") or pick_request_id(None)
        payload = error_body(
            "payload_too_large", f"the request body must be at most {limit} bytes", request_id
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
