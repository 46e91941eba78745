"""The one error shape of the admin API, and the handlers that turn every failure into it."""

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from capps_kit.asgi import error_payload

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID_LENGTH = 128


class ApiError(Exception):
    """An error a caller caused or may act on; rendered as `{"error": {code, message, target}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a message for people, the request id as target."""

    code: str
    message: str
    target: str


class ErrorBody(BaseModel):
    """The one error shape of the admin API."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Bad request: a parameter or cursor is invalid",
    401: "Missing, invalid, expired or revoked bearer token",
    403: "The token lacks the role this call needs",
    404: "No such resource in the caller's tenant",
    409: "Conflicts with the current state",
    412: "If-Match names a version the resource is no longer at; read it again",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "The body or a parameter does not validate; the message names the field",
    429: "Too many requests; retry after Retry-After seconds",
    503: "A store does not answer; retry",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error statuses, each with the error model."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }


def app_not_found(app_id: str) -> ApiError:
    """The 404 of an app that is not the caller's tenant's (or does not exist)."""
    # Echo the id only when it has the shape of one, so odd input is not reflected back.
    try:
        shown = app_id if str(uuid.UUID(app_id)) == app_id else "with this id"
    except ValueError:
        shown = "with this id"
    return ApiError(404, "not_found", f"no app {shown}")


def pick_request_id(sent: str | None) -> str:
    """The caller's request id when it is printable and short, else a fresh uuid."""
    if sent and len(sent) <= MAX_REQUEST_ID_LENGTH and sent.isprintable() and sent.isascii():
        return sent
    return str(uuid.uuid4())


def request_id_of(request: Request) -> str:
    """The id the request-id middleware gave this request."""
    state = request.scope.get("state") or {}
    found = state.get("request_id")
    return found if isinstance(found, str) else pick_request_id(None)


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response carrying the request id as target and header."""
    request_id = request_id_of(request)
    return JSONResponse(
        error_payload(code, message, request_id),
        status_code=status,
        headers={**(headers or {}), REQUEST_ID_HEADER: request_id},
    )


def describe_validation_errors(errors: list[Any]) -> str:
    """One line naming each bad field and what is wrong with it."""
    parts = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        field = ".".join(location) or "body"
        parts.append(f"{field}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


CLIENT_CLOSED_REQUEST = 499
"""Recorded (nginx's convention) for a request whose caller left before sending it whole."""

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.code, exc.message, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        request, 422, "validation_error", describe_validation_errors(list(exc.errors()))
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    else:
        message = str(exc.detail)
    code = _STATUS_CODES.get(exc.status_code, "error")
    return error_response(request, exc.status_code, code, message, dict(exc.headers or {}))


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    # Not a fault of ours: the caller hung up before its request body arrived (nginx's 499).
    assert isinstance(exc, ClientDisconnect)
    log.info(
        "caller disconnected before its request arrived",
        extra={"request_id": request_id_of(request), "path": request.url.path},
    )
    return error_response(
        request, CLIENT_CLOSED_REQUEST, "client_closed_request", "the caller disconnected"
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The cause goes to the log with the request id; the caller gets the id, never the trace.
    log.error(
        "unhandled error",
        exc_info=exc,
        extra={"request_id": request_id_of(request), "path": request.url.path},
    )
    return error_response(request, 500, "internal_error", "internal error; quote the target id")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of the app render in the one JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected_error)
