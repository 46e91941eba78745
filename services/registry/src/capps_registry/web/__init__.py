"""The Connected applications web page: tenant admins sign in and manage their apps at `/`."""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from capps_registry.web import actions, pages, signin
from capps_registry.web.rendering import STATIC_DIR


def install_page(app: FastAPI) -> None:
    """Mount the page's routes and its static files (CSS, the copy button's script)."""
    app.include_router(signin.router)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
