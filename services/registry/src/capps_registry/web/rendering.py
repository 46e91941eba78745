"""Templates, security headers, and the route class that turns every failure into a page.

A page never shows a stack trace or a JSON error body: an error a user caused becomes a page
with a clear message and its status, anything else a page that quotes the request id.
"""

import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from capps_registry.errors import REQUEST_ID_HEADER, ApiError, request_id_of
from capps_registry.web import wording

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"

# Inline SVG is markup, not script or style, so a strict policy fits every page.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["relative"] = wording.relative_time
templates.env.filters["secrets_warning"] = wording.secrets_warning
templates.env.filters["utc"] = wording.utc_text
templates.env.filters["iso"] = wording.iso_text
templates.env.filters["share"] = wording.share
templates.env.globals["svg"] = Markup  # charts are built by charts.py, which escapes its text


class SignInRequired(Exception):  # noqa: N818 - a redirect, not an error of the program
    """No live session: send the browser to sign in, saying why when there was one."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason or "sign in")
        self.reason = reason


class PageError(Exception):
    """A failure to show as a page: status, title and a message for the admin."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A page from `template`, with the security headers every page carries."""
    response = templates.TemplateResponse(
        request, template, dict(context), status_code=status, headers=dict(PAGE_HEADERS)
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """The error page: what went wrong in words, and the request id to quote."""
    session = request.scope.get("capps_web_session")
    return render(
        request,
        "error.html",
        {
            "title": title,
            "message": message,
            "request_id": request_id_of(request),
            "session": session,
        },
        status=status,
        headers={REQUEST_ID_HEADER: request_id_of(request)},
    )


_TITLES = {400: "Bad request", 404: "Not found", 409: "Conflict", 422: "Check the form"}


class PageRoute(APIRoute):
    """A route whose failures render as pages instead of the API's JSON errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so every exception becomes a page or a redirect to sign in."""
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                target = "/signin" + (f"?reason={exc.reason}" if exc.reason else "")
                return RedirectResponse(target, status_code=303, headers=dict(PAGE_HEADERS))
            except PageError as exc:
                return error_page(request, exc.status, exc.title, exc.message)
            except ApiError as exc:
                title = _TITLES.get(exc.status, "Something went wrong")
                return error_page(request, exc.status, title, exc.message)
            except RequestValidationError as exc:
                fields = (
                    ", ".join(str(error.get("loc", ("?",))[-1]) for error in exc.errors())
                    or "the request"
                )
                return error_page(request, 400, "Bad request", f"check {fields}")
            except Exception:
                # The cause goes to the log under the request id; the page shows only the id.
                log.exception(
                    "page failed",
                    extra={"request_id": request_id_of(request), "path": request.url.path},
                )
                return error_page(
                    request,
                    500,
                    "Something went wrong",
                    "The page could not be shown. Try again; if it keeps failing, quote the "
                    "request id below to your platform team.",
                )

        return page_handler
