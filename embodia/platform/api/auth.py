"""API tokens: created once per project with a scope, stored as the sha256 of a 32-byte secret, checked in
constant time; plus the FastAPI dependency that authenticates a request and a per-token rate limit.

Public API: SCOPES, create_token(store, project, scope, name="") -> str, authenticate(store, secret) -> Caller,
revoke_token(store, secret, cache=None), TokenCache(ttl_s), require(scope) -> FastAPI dependency yielding a Caller,
authorize(request, secret, scope) -> Caller, RateLimiter(per_minute).
A server keeps recently authenticated tokens for TOKEN_CACHE_TTL_S seconds (no database work per request);
revoking through `revoke_token` with the server's cache takes effect at once, elsewhere within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import Depends, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from embodia.core.errors import UserError
from embodia.platform.models import ApiToken, Member, Project
from embodia.platform.registry import current_user
from embodia.platform.store import Store

SCOPES = ("read", "run", "admin")
TOKEN_PREFIX = "emb_"
PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
TOKEN_CACHE_TTL_S = 5.0
TOKEN_CACHE_MAX = 10_000


class AuthError(UserError):
    """No token, an unknown/revoked token (401), or a token whose scope is too low (403)."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's id, project and scope."""

    token_id: int
    project: str
    scope: str

    def allows(self, scope: str) -> bool:
        """True when this caller's scope is at least `scope`."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def check_project(project: str) -> str:
    """A project name: letters, digits, `_.-`, at most 100 characters."""
    if not PROJECT_RE.match(project):
        raise UserError(f"project name {project!r} is invalid: use letters, digits, '_', '.', '-' (at most 100)")
    return project


def check_scope(scope: str) -> str:
    """One of read, run, admin."""
    if scope not in SCOPES:
        raise UserError(f"scope {scope!r} is unknown: use one of {', '.join(SCOPES)}")
    return scope


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(store: Store, project: str, scope: str, name: str = "") -> str:
    """Make a token for `project` (created if new, the creator added as a member) and return its secret once."""
    check_project(project), check_scope(scope)
    secret = TOKEN_PREFIX + secrets.token_hex(32)
    user = current_user()
    with store.session() as session:
        if session.get(Project, project) is None:
            session.add(Project(name=project))
        if session.get(Member, (project, user)) is None:
            session.add(Member(project=project, user=user, role=scope))
        session.add(ApiToken(project=project, scope=scope, name=name[:200], secret_sha256=_digest(secret),
                             created_by=user))
    return secret


def authenticate(store: Store, secret: str) -> Caller:
    """The caller a secret belongs to; AuthError (401) when it is unknown or revoked."""
    digest = _digest(secret)
    with store.read_session() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.secret_sha256 == digest)).first()
        if row is None or row.revoked or not hmac.compare_digest(row.secret_sha256, digest):
            raise AuthError("the API token is unknown or revoked: create one with `embodia token create`")
        return Caller(row.id, row.project, row.scope)


def revoke_token(store: Store, secret: str, cache: TokenCache | None = None) -> None:
    """Revoke the token `secret` for good (and drop it from `cache`, the serving app's, at once)."""
    digest = _digest(secret)
    with store.session() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.secret_sha256 == digest)).first()
        if row is None:
            raise UserError("no such API token: nothing to revoke")
        row.revoked = True
    if cache is not None:
        cache.forget(digest)


class TokenCache:
    """Callers of recently authenticated tokens by secret hash, each kept `ttl_s` seconds, so a busy server does
    not hit the database for every request. Only successes are kept: an unknown token always asks the database."""

    def __init__(self, ttl_s: float = TOKEN_CACHE_TTL_S, max_entries: int = TOKEN_CACHE_MAX):
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: dict[str, tuple[Caller, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Caller | None:
        """The cached caller of `digest`, None when absent or older than `ttl_s`."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or time.monotonic() - entry[1] > self.ttl_s:
                self._entries.pop(digest, None)
                return None
            return entry[0]

    def put(self, digest: str, caller: Caller) -> None:
        """Remember `caller` for `digest` (the whole cache is dropped when it reaches `max_entries`)."""
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = (caller, time.monotonic())

    def forget(self, digest: str) -> None:
        """Drop `digest` (its token was revoked)."""
        with self._lock:
            self._entries.pop(digest, None)


def _cached_caller(request: Request, secret: str) -> Caller:
    cache: TokenCache = request.app.state.tokens
    digest = _digest(secret)
    caller = cache.get(digest)
    if caller is None:
        caller = authenticate(request.app.state.store, secret)
        cache.put(digest, caller)
    return caller


def _admit(request: Request, caller: Caller, scope: str) -> Caller:
    if not request.app.state.limiter.allow(caller.token_id):
        raise RateLimited("too many requests for this token: slow down and retry in a few seconds")
    if not caller.allows(scope):
        raise AuthError(f"this route needs a token with scope {scope!r}; yours is {caller.scope!r}", 403)
    return caller


class RateLimiter:
    """A token bucket per token: `per_minute` requests a minute, bursts up to that many."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: int) -> bool:
        """Take one request from `key`'s bucket; False when it is empty."""
        now = time.monotonic()
        with self._lock:
            level, last = self._buckets.get(key, (self.capacity, now))
            level = min(self.capacity, level + (now - last) * self.rate)
            if level < 1.0:
                self._buckets[key] = (level, now)
                return False
            self._buckets[key] = (level - 1.0, now)
            return True


class RateLimited(UserError):
    """Too many requests from one token (429)."""


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    kind, _, secret = header.partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        raise AuthError("missing API token: send the header 'Authorization: Bearer <token>'")
    return secret.strip()


def require(scope: str):
    """A dependency: the authenticated caller, refused (403) below `scope`, limited (429) per token."""
    check_scope(scope)

    async def dependency(request: Request) -> Caller:
        secret = _bearer(request)
        caller = request.app.state.tokens.get(_digest(secret))
        if caller is None:  # the database only on a cache miss, and then off the event loop
            caller = await run_in_threadpool(_cached_caller, request, secret)
        return _admit(request, caller, scope)

    return Depends(dependency)


def authorize(request: Request, secret: str, scope: str) -> Caller:
    """The caller of `secret` (from a header or the console's cookie): 401 unknown, 429 over its rate, 403 when
    its scope is below `scope`."""
    return _admit(request, _cached_caller(request, secret), scope)
