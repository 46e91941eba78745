"""OAuth 2.0 errors (RFC 6749 §5.2), rendered as `{"error", "error_description"}`."""

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from capps_registry.errors import REQUEST_ID_HEADER, request_id_of

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthErrorBody(BaseModel):
    """RFC 6749 §5.2 error body."""

    error: str
    error_description: str


class OAuthError(Exception):
    """An RFC 6749 error; `invalid_client` answers 401 with a Basic challenge, others 400."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self._status = status
        self.headers = headers or {}

    @property
    def status(self) -> int:
        """401 for failed client authentication (§5.2), 400 otherwise, unless set."""
        if self._status is not None:
            return self._status
        return 401 if self.error == "invalid_client" else 400


async def oauth_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Render an OAuthError the way RFC 6749 §5.2 says."""
    assert isinstance(exc, OAuthError)
    headers = {**NO_STORE, **exc.headers, REQUEST_ID_HEADER: request_id_of(request)}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="capps", charset="UTF-8"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers=headers,
    )
