"""The demo platform API as a raw ASGI app, cheap enough never to be a benchmark's bottleneck."""

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from capps_demo_api.data import build_alerts, build_machines
from capps_kit.asgi import Receive, Scope, Send, ack_lifespan, error_body

MAX_BODY_BYTES = 1024 * 1024
MAX_TOP = 10_000
ALERT_STATUSES = frozenset({"New", "InProgress", "Resolved"})
ISOLATION_TYPES = frozenset({"Full", "Selective"})
INDICATOR_TYPES = frozenset({"FileSha1", "FileSha256", "IpAddress", "DomainName", "Url"})
INDICATOR_ACTIONS = frozenset({"Alert", "AlertAndBlock", "Allowed", "Block", "Audit"})
_JSON = [(b"content-type", b"application/json")]


class ApiError(Exception):
    """A client error answered as `{"error": {...}}` with the given status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Request:
    """What a handler needs of one HTTP request."""

    __slots__ = ("body", "caller", "params", "query", "request_id")

    def __init__(
        self, params: list[str], query: str, body: bytes, caller: str, request_id: str
    ) -> None:
        self.params = params
        self.query = query
        self.body = body
        self.caller = caller
        self.request_id = request_id

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or a 400 naming what is wrong with it."""
        if not self.body:
            raise ApiError(400, "invalid_body", "request body must be a JSON object")
        try:
            document = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "invalid_body", f"request body is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ApiError(400, "invalid_body", "request body must be a JSON object")
        return document


Handler = Callable[[Request], tuple[int, object]]


def now_stamp() -> str:
    """The current UTC time as the platform's timestamps are written."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def page_bounds(query: str) -> tuple[int, int]:
    """`$top` and `$skip` from the query string (OData style), validated."""
    top, skip = 50, 0
    for name, value in parse_qsl(query):
        if name not in ("$top", "$skip"):
            continue
        if not value.isdigit():
            raise ApiError(400, "invalid_query", f"{name} must be a non-negative integer")
        if name == "$top":
            top = min(int(value), MAX_TOP)
        else:
            skip = int(value)
    return top, skip


def require_str(
    document: dict[str, Any], name: str, *, allowed: frozenset[str] | None = None
) -> str:
    """A required non-empty string field, optionally one of `allowed`."""
    value = document.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "invalid_body", f"field {name!r} must be a non-empty string")
    if allowed is not None and value not in allowed:
        raise ApiError(400, "invalid_body", f"field {name!r} must be one of {sorted(allowed)}")
    return value


def optional_str(document: dict[str, Any], name: str, default: str | None = None) -> str | None:
    """An optional string field (null allowed)."""
    value = document.get(name, default)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "invalid_body", f"field {name!r} must be a string or null")
    return value


def reject_unknown(document: dict[str, Any], known: frozenset[str]) -> None:
    """Name the fields this endpoint does not accept."""
    unknown = sorted(set(document) - known)
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown fields: {', '.join(unknown)}")


class DemoApi:
    """Answers the routes of `config/catalog.yaml` from in-memory sample data."""

    def __init__(self) -> None:
        self.alerts = build_alerts()
        self.machines = build_machines()
        self._action_ids = itertools.count(1)
        self._indicator_ids = itertools.count(1)
        # Literal paths first (one dict lookup), then templates by segment count.
        self._exact: dict[tuple[str, str], Handler] = {
            ("GET", "/api/alerts"): self.list_alerts,
            ("GET", "/api/machines"): self.list_machines,
            ("POST", "/api/advancedqueries/run"): self.run_query,
            ("POST", "/api/indicators"): self.submit_indicator,
        }
        self._templated: dict[tuple[str, str, int], Handler] = {
            ("GET", "alerts", 3): self.get_alert,
            ("PATCH", "alerts", 3): self.patch_alert,
            ("GET", "machines", 3): self.get_machine,
            ("POST", "machines", 4): self.isolate_machine,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve HTTP; acknowledge lifespan; refuse anything else."""
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await ack_lifespan(receive, send)

    def resolve(self, method: str, path: str) -> tuple[Handler, list[str]] | None:
        """The handler and path parameters for a request, or None."""
        handler = self._exact.get((method, path))
        if handler is not None:
            return handler, []
        parts = path.split("/")
        # "/api/alerts/x" -> ["", "api", "alerts", "x"]; "/api/machines/x/isolate" has 5 parts.
        if len(parts) < 4 or parts[0] or parts[1] != "api" or not parts[3]:
            return None
        if len(parts) == 5 and parts[4] != "isolate":
            return None
        handler = self._templated.get((method, parts[2], len(parts) - 1))
        return (handler, [parts[3]]) if handler is not None else None

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = ""
        caller = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
            elif name == b"x-capps-app-id":
                caller = value.decode("latin-1")[:128]
        request_id = request_id or str(uuid.uuid4())
        method: str = scope["method"]
        path: str = scope["path"]
        if path == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}', request_id)
            return
        found = self.resolve(method, path)
        if found is None:
            await _error(send, 404, "not_found", f"no route {method} {path}", request_id)
            return
        handler, params = found
        try:
            body = await _read_body(receive)
            request = Request(
                params, scope["query_string"].decode("latin-1"), body, caller, request_id
            )
            status, payload = handler(request)
        except ApiError as exc:
            await _error(send, exc.status, exc.code, exc.message, request_id)
            return
        await _respond(send, status, orjson.dumps(payload), request_id)

    def list_alerts(self, request: Request) -> tuple[int, object]:
        """GET /api/alerts"""
        top, skip = page_bounds(request.query)
        values = list(self.alerts.values())[skip : skip + top]
        return 200, {"@odata.context": "/api/$metadata#Alerts", "value": values}

    def get_alert(self, request: Request) -> tuple[int, object]:
        """GET /api/alerts/{id}"""
        return 200, self._alert(request.params[0])

    def patch_alert(self, request: Request) -> tuple[int, object]:
        """PATCH /api/alerts/{id}: status, assignment, classification, or a comment."""
        alert = self._alert(request.params[0])
        document = request.json_object()
        reject_unknown(
            document,
            frozenset({"status", "assignedTo", "classification", "determination", "comment"}),
        )
        if not document:
            raise ApiError(400, "invalid_body", "nothing to update")
        if "status" in document:
            require_str(document, "status", allowed=ALERT_STATUSES)
        for name in ("assignedTo", "classification", "determination"):
            optional_str(document, name)
        comment = optional_str(document, "comment")
        updated = {**alert, **{k: v for k, v in document.items() if k != "comment"}}
        if comment:
            updated["comments"] = [
                *alert["comments"],
                {
                    "comment": comment,
                    "createdBy": request.caller or None,
                    "createdTime": now_stamp(),
                },
            ]
        updated["lastUpdateTime"] = now_stamp()
        self.alerts[alert["id"]] = updated
        return 200, updated

    def list_machines(self, request: Request) -> tuple[int, object]:
        """GET /api/machines"""
        top, skip = page_bounds(request.query)
        values = list(self.machines.values())[skip : skip + top]
        return 200, {"@odata.context": "/api/$metadata#Machines", "value": values}

    def get_machine(self, request: Request) -> tuple[int, object]:
        """GET /api/machines/{id}"""
        return 200, self._machine(request.params[0])

    def isolate_machine(self, request: Request) -> tuple[int, object]:
        """POST /api/machines/{id}/isolate: queue an isolation action."""
        machine = self._machine(request.params[0])
        document = request.json_object()
        reject_unknown(document, frozenset({"Comment", "IsolationType"}))
        comment = require_str(document, "Comment")
        isolation = document.get("IsolationType", "Full")
        if isolation not in ISOLATION_TYPES:
            choices = sorted(ISOLATION_TYPES)
            raise ApiError(400, "invalid_body", f"IsolationType must be one of {choices}")
        self.machines[machine["id"]] = {**machine, "isolated": True}
        return 201, {
            "id": f"ma-{next(self._action_ids):06d}",
            "type": "Isolate",
            "isolationType": isolation,
            "requestor": request.caller or None,
            "requestorComment": comment,
            "status": "Pending",
            "machineId": machine["id"],
            "computerDnsName": machine["computerDnsName"],
            "creationDateTimeUtc": now_stamp(),
        }

    def run_query(self, request: Request) -> tuple[int, object]:
        """POST /api/advancedqueries/run: a fixed-shape result over the sample machines."""
        document = request.json_object()
        reject_unknown(document, frozenset({"Query"}))
        require_str(document, "Query")
        stamp = now_stamp()
        rows = [
            {
                "Timestamp": stamp,
                "DeviceId": m["id"],
                "DeviceName": m["computerDnsName"],
                "ActionType": "ProcessCreated",
                "FileName": "powershell.exe",
            }
            for m in self.machines.values()
        ]
        schema = [
            {"Name": "Timestamp", "Type": "DateTime"},
            {"Name": "DeviceId", "Type": "String"},
            {"Name": "DeviceName", "Type": "String"},
            {"Name": "ActionType", "Type": "String"},
            {"Name": "FileName", "Type": "String"},
        ]
        return 200, {"Schema": schema, "Results": rows, "Stats": {"ExecutionTime": 0.004}}

    def submit_indicator(self, request: Request) -> tuple[int, object]:
        """POST /api/indicators: accept one threat indicator."""
        document = request.json_object()
        reject_unknown(
            document,
            frozenset(
                {
                    "indicatorValue",
                    "indicatorType",
                    "action",
                    "title",
                    "description",
                    "severity",
                    "expirationTime",
                }
            ),
        )
        indicator = {
            "indicatorValue": require_str(document, "indicatorValue"),
            "indicatorType": require_str(document, "indicatorType", allowed=INDICATOR_TYPES),
            "action": require_str(document, "action", allowed=INDICATOR_ACTIONS),
            "title": require_str(document, "title"),
            "description": optional_str(document, "description"),
            "severity": optional_str(document, "severity", "Informational"),
            "expirationTime": optional_str(document, "expirationTime"),
        }
        return 200, {
            "id": str(next(self._indicator_ids)),
            **indicator,
            "createdBy": request.caller or None,
            "creationTimeDateTimeUtc": now_stamp(),
        }

    def _alert(self, ident: str) -> dict[str, Any]:
        alert = self.alerts.get(ident)
        if alert is None:
            raise ApiError(404, "not_found", f"alert {ident!r} not found")
        return alert

    def _machine(self, ident: str) -> dict[str, Any]:
        machine = self.machines.get(ident)
        if machine is None:
            raise ApiError(404, "not_found", f"machine {ident!r} not found")
        return machine


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes")
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, request_id: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *_JSON,
                (b"content-length", b"%d" % len(body)),
                (b"x-request-id", request_id.encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, code: str, message: str, request_id: str) -> None:
    await _respond(send, status, error_body(code, message, request_id), request_id)
