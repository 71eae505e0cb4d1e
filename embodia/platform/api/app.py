"""`create_app(store)`: the FastAPI app of `embodia server`: the API under /api/v1 and the web console under
/console (`console.mount_console`). Bad input answers a 4xx with {"error": ...}; internal errors are logged and
answer 500 with no details. `app_from_environment()` is the factory each process of `embodia server --workers N`
calls (the API only; settings from `$EMBODIA_API_SETTINGS`, the workspace from `$EMBODIA_HOME`/`$EMBODIA_DB_URL`)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from embodia.core.errors import ConfigError, UserError
from embodia.platform.api.auth import AuthError, RateLimited, RateLimiter, TokenCache
from embodia.platform.api.console import mount_console
from embodia.platform.api.routes import NotFound, router
from embodia.platform.api.runs import PipelineRuns
from embodia.platform.api.schemas import ErrorBody
from embodia.platform.store import Store, open_store

log = logging.getLogger("embodia.api")
DEFAULT_MAX_BODY = 64 << 20
DEFAULT_RATE_PER_MINUTE = 600
SETTINGS_ENV = "EMBODIA_API_SETTINGS"
ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 413, 422, 429)}


@dataclass(frozen=True)
class ServerSettings:
    """What `embodia server` passes to each of its worker processes."""

    max_body_bytes: int = DEFAULT_MAX_BODY
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE

    def to_env(self) -> str:
        """The settings as the JSON value of `$EMBODIA_API_SETTINGS`."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServerSettings:
        """The settings in `$EMBODIA_API_SETTINGS` (defaults when unset); ConfigError names a bad value."""
        text = os.environ.get(SETTINGS_ENV, "")
        try:
            values = json.loads(text) if text else {}
            settings = cls(**values)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{SETTINGS_ENV}={text[:200]!r} is not valid server settings ({error}); "
                              "unset it, `embodia server` sets it for its workers") from None
        for name, value in asdict(settings).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{SETTINGS_ENV}: {name}={value!r}, expected an integer >= 1")
        return settings


class BodyLimit:
    """ASGI middleware: a request whose body passes `max_bytes` answers 413 before the route reads it all."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _too_large(self.max_bytes)(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.max_bytes)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"error": f"request body larger than {max_bytes} bytes"}, status_code=413)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _add_handlers(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def auth_error(_request: Request, error: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=headers)

    @app.exception_handler(RateLimited)
    async def rate_limited(_request: Request, error: RateLimited) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=429, headers={"Retry-After": "1"})

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, error: NotFound) -> JSONResponse:
        return _error(404, str(error.args[0]) if error.args else "not found")

    @app.exception_handler(UserError)
    async def user_error(_request: Request, error: UserError) -> JSONResponse:
        return _error(400, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in error.errors()]
        return _error(422, "invalid request: " + "; ".join(parts)[:2000])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal error (logged on the server)")


def create_app(store: Store, *, max_body_bytes: int = DEFAULT_MAX_BODY,
               rate_per_minute: int = DEFAULT_RATE_PER_MINUTE, console: bool = True) -> FastAPI:
    """The API (and with `console`, the web console) over one open workspace; each request is authenticated by
    a project token."""
    app = FastAPI(title="embodia platform API", version="1", responses=ERRORS,
                  description="Projects, jobs, artifacts, lineage and the model registry of one embodia workspace. "
                              "Send 'Authorization: Bearer <token>' (made with `embodia token create`).")
    app.state.store = store
    app.state.limiter = RateLimiter(rate_per_minute)
    app.state.tokens = TokenCache()
    app.state.runs = PipelineRuns(store)
    _add_handlers(app)
    app.include_router(router)
    if console:
        mount_console(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


def app_from_environment() -> FastAPI:
    """The app of one `embodia server --workers N` process: its own store over the shared workspace, the API
    only (the console keeps sign-in links and sessions in one process's memory)."""
    settings = ServerSettings.from_env()
    return create_app(open_store(migrate=False), max_body_bytes=settings.max_body_bytes,
                      rate_per_minute=settings.rate_per_minute, console=False)
