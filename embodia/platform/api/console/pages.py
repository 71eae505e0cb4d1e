"""The console's routes under /console: sign-in, then one page per platform object. Every page gets its data
from the API's route functions with the signed-in caller, so a page shows exactly what the API would answer."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from embodia.core.errors import UserError
from embodia.core.pages import page_environment
from embodia.platform.api import routes
from embodia.platform.api.auth import AuthError, Caller, authenticate
from embodia.platform.api.console import session
from embodia.platform.api.console.session import (
    LoginNeeded,
    console_caller,
    csrf_token,
)

HERE = Path(__file__).resolve().parent
STATIC = "/console/static"
NAV = (("/console/", "Project"), ("/console/pipelines", "Pipelines"), ("/console/jobs", "Jobs"),
       ("/console/runs", "Runs"), ("/console/datasets", "Datasets"), ("/console/reports", "Reports"),
       ("/console/registry", "Registry"), ("/console/lineage", "Lineage"), ("/console/deployments", "Deployments"),
       ("/console/teleop", "Teleoperate"))
MAX_FORM_BYTES = 256 << 10

router = APIRouter(prefix="/console", include_in_schema=False)


@functools.cache
def _environment():
    return page_environment([HERE / "templates"])


def render(request: Request, template: str, caller: Caller | None, *, status: int = 200, section: str = "",
           **context: Any) -> HTMLResponse:
    """A console page: `template` (in console/templates, extending base.html) with the layout's context."""
    page = _environment().get_template(template).render(
        caller=caller, csrf=csrf_token(request) if caller else "", nav=NAV, section=section, static=STATIC,
        uplot=context.pop("uplot", False), title=context.pop("title", section or "embodia"), **context)
    return HTMLResponse(page, status_code=status, headers=_SECURITY_HEADERS)


# Pages run only their own scripts and styles, reach only this server, and are never framed.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form body as {name: value} (first value of each); larger than 256 KiB is a UserError."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise UserError(f"form larger than {MAX_FORM_BYTES >> 10} KiB: paste less or use the API")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("form is not UTF-8 text") from None
    return {name: values[0] for name, values in parse_qs(text, keep_blank_values=True).items()}


async def posted(request: Request, scope: str) -> tuple[Caller, dict[str, str]]:
    """The caller and form of a console POST, after the scope and CSRF checks."""
    caller = console_caller(request, scope)
    fields = await form_fields(request)
    session.check_csrf(request, fields.get(session.CSRF_FIELD))
    return caller, fields


def _signed_in(response: Response, request: Request, token: str) -> Response:
    response.set_cookie(session.COOKIE, token, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


# ------------------------------------------------------------------------------------------------ sign-in


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, once: str | None = None) -> Response:
    """The sign-in form; `?once=CODE` signs in with a one-time link (void after this use)."""
    if once is None:
        return render(request, "login.html", None, title="Sign in", error=None)
    token = request.app.state.console_logins.redeem(once[:200])
    if token is None:
        return render(request, "login.html", None, status=401, title="Sign in",
                      error="This one-time link was used already or has expired: sign in with a token, or restart "
                            "`embodia server` for a new link.")
    return _signed_in(RedirectResponse("/console/", status_code=303), request, token)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Sign in with an API token pasted into the form."""
    session.check_same_origin(request)
    token = (await form_fields(request)).get("token", "").strip()
    try:
        authenticate(request.app.state.store, token)
    except AuthError as error:
        return render(request, "login.html", None, status=401, title="Sign in", error=str(error))
    return _signed_in(RedirectResponse("/console/", status_code=303), request, token)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget this browser's session."""
    await posted(request, "read")
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(session.COOKIE, path="/")
    return response


# ---------------------------------------------------------------------------------------------- project


@router.get("/", response_class=HTMLResponse)
def project_page(request: Request) -> Response:
    """The caller's project: members, quotas and how many of each thing it holds."""
    caller = console_caller(request)
    project = routes.get_project(request, caller=caller)
    limit = 500
    tiles = [("pipeline runs", "/console/pipelines", len(routes.list_runs(request, limit=1000, caller=caller))),
             ("jobs", "/console/jobs", len(routes.list_jobs(request, status=None, limit=limit, caller=caller))),
             ("datasets", "/console/datasets", _count(request, caller, "dataset")),
             ("reports", "/console/reports", _count(request, caller, "report")),
             ("model versions", "/console/registry", len(routes.list_models(request, name=None, caller=caller))),
             ("deployments", "/console/deployments", len(routes.list_deployments(request, caller=caller)))]
    return render(request, "project.html", caller, section="Project", title=f"Project {caller.project}",
                  project=project, tiles=tiles)


def _count(request: Request, caller: Caller, kind: str) -> int:
    return len(routes.list_artifacts(request, kind=kind, limit=500, caller=caller))


# ------------------------------------------------------------------------------------------------ mounting


def _is_console(request: Request) -> bool:
    return request.url.path.startswith("/console")


def html_errors(app: FastAPI) -> None:
    """Console paths answer errors as pages (sign-in redirects, 4xx with the message); the API keeps JSON."""
    api_handlers = dict(app.exception_handlers)

    async def login_needed(request: Request, error: LoginNeeded) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/console/login"})
        return RedirectResponse("/console/login", status_code=303)

    def page_error(kind: type, status_of) -> None:
        async def handler(request: Request, error: Exception) -> Response:
            if not _is_console(request):
                return await api_handlers[kind](request, error)
            status = status_of(error)
            return render(request, "error.html", _caller_or_none(request), status=status,
                          title=_ERROR_TITLES.get(status, "Request refused"), message=_message(error))
        app.add_exception_handler(kind, handler)

    app.add_exception_handler(LoginNeeded, login_needed)
    page_error(AuthError, lambda error: error.status)
    page_error(routes.NotFound, lambda error: 404)
    page_error(UserError, lambda error: 400)
    page_error(RequestValidationError, lambda error: 422)
    page_error(StarletteHTTPException, lambda error: error.status_code)


_ERROR_TITLES = {400: "Cannot do that", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
                 422: "Invalid address", 429: "Too many requests"}


def _message(error: Exception) -> str:
    if isinstance(error, StarletteHTTPException):
        return "no such page" if error.status_code == 404 else str(error.detail)
    if isinstance(error, RequestValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                         for e in error.errors())[:500]
    return str(error.args[0]) if error.args else str(error)


def _caller_or_none(request: Request) -> Caller | None:
    try:
        return console_caller(request)
    except AuthError:
        return None
