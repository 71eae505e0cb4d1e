"""Mounting the console on the API's app, and the one-time sign-in link `embodia server` prints."""

from __future__ import annotations

import secrets

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from embodia.platform.api.auth import create_token
from embodia.platform.api.console import (
    artifacts,
    pages,
    pipelines,
    registry,
    session,
    teleop,
)


def login_link(app: FastAPI, project: str, base_url: str) -> str:
    """A one-time console sign-in URL for an admin of `project` (a new token, kept only in this server's memory
    behind the link's code)."""
    token = create_token(app.state.store, project, "admin", name="console one-time login")
    return f"{base_url.rstrip('/')}/console/login?once={app.state.console_logins.add(token)}"


def mount_console(app: FastAPI) -> None:
    """Serve the console on `app` (made by `create_app`): pages, static files and HTML error pages."""
    app.state.console_logins = session.LoginLinks()
    app.state.console_key = secrets.token_bytes(32)
    for module_router in (pages.router, pipelines.router, artifacts.router, registry.router,
                          teleop.router):
        app.include_router(module_router)
    app.mount(pages.STATIC, StaticFiles(directory=pages.HERE / "static"), name="console-static")
    pages.html_errors(app)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)
