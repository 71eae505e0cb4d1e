"""Console sign-in: the API token lives in an HttpOnly, SameSite=Strict cookie; each POST also carries a CSRF token
(an HMAC of the session under a per-server key) in a header or form field; one-time login links are kept hashed
in memory, void after their first use or when they expire."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from urllib.parse import urlsplit

from fastapi import Request

from embodia.platform.api.auth import AuthError, Caller, authorize

COOKIE = "embodia_console"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
LOGIN_LINK_TTL_S = 24 * 3600.0


class LoginNeeded(AuthError):
    """No console session (or a revoked one): pages redirect to the login form."""


class LoginLinks:
    """One-time login codes of a server: code hash -> (token secret, expiry). Each code works once."""

    def __init__(self) -> None:
        self._codes: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def add(self, token: str, ttl_s: float = LOGIN_LINK_TTL_S) -> str:
        """A new code that signs in as `token` once, within `ttl_s` seconds."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[_digest(code)] = (token, time.monotonic() + ttl_s)
        return code

    def redeem(self, code: str) -> str | None:
        """The token of `code`, which is void from now on; None when unknown, used or expired."""
        with self._lock:
            token, expires = self._codes.pop(_digest(code), (None, 0.0))
        return token if token is not None and time.monotonic() < expires else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def session_token(request: Request) -> str | None:
    """The API token of this browser's console session, if it has one."""
    token = request.cookies.get(COOKIE, "").strip()
    return token or None


def console_caller(request: Request, scope: str = "read") -> Caller:
    """The signed-in caller (LoginNeeded without a valid session); scope and rate checked like the API."""
    token = session_token(request)
    if token is None:
        raise LoginNeeded("sign in to the console with an API token")
    try:
        return authorize(request, token, scope)
    except AuthError as error:
        if error.status == 401:
            raise LoginNeeded(str(error)) from None
        raise


def csrf_token(request: Request) -> str:
    """The CSRF token of this session: pages put it in forms and htmx headers."""
    token = session_token(request) or ""
    return hmac.new(request.app.state.console_key, token.encode(), hashlib.sha256).hexdigest()


def check_same_origin(request: Request) -> None:
    """Refuse (403) a POST whose Origin header names another site."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise AuthError(f"cross-site request from {origin} refused", 403)


def check_csrf(request: Request, form_value: str | None = None) -> None:
    """Refuse (403) a POST without this session's CSRF token (header or form field) or from another origin."""
    check_same_origin(request)
    sent = request.headers.get(CSRF_HEADER) or form_value or ""
    if not hmac.compare_digest(sent.encode(), csrf_token(request).encode()):
        raise AuthError("missing or stale CSRF token: reload the page and try again", 403)
