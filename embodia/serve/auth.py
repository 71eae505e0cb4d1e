"""Optional bearer-token auth for the policy server (`embodia serve --token-file FILE`), as ASGI middleware
around either framework: every endpoint but /healthz needs `Authorization: Bearer <token>`."""

from __future__ import annotations

import hmac
from pathlib import Path

from embodia.core.errors import ConfigError
from embodia.serve.codec import JSON_TYPE, error_body
from embodia.serve.metrics import ServerMetrics

OPEN_PATHS = frozenset({"/healthz"})  # a load balancer's probe needs no secret
MIN_TOKEN_CHARS = 16
_MAKE_ONE = "make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`"


def read_token(path: str | Path) -> bytes:
    """The token in `path` (surrounding whitespace stripped); missing, short or non-ASCII tokens are refused."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigError(f"--token-file {path} does not exist; {_MAKE_ONE}") from None
    except IsADirectoryError:
        raise ConfigError(f"--token-file {path} is a directory; pass the file holding the token") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--token-file {path} holds non-ASCII bytes; a token must be printable ASCII") from None
    if len(text) < MIN_TOKEN_CHARS or not text.isprintable() or any(ch.isspace() for ch in text):
        raise ConfigError(f"--token-file {path}: the token must be one word of at least {MIN_TOKEN_CHARS} printable "
                          f"characters (got {len(text)}); {_MAKE_ONE}")
    return text.encode("ascii")


class BearerAuth:
    """ASGI middleware: refuse requests (401) and WebSocket handshakes (close 1008) without the right token."""

    def __init__(self, app, token: bytes, metrics: ServerMetrics):
        self.app = app
        self.expected = b"bearer " + token
        self.metrics = metrics

    async def __call__(self, scope: dict, receive, send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope["path"] in OPEN_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        self.metrics.record_request(self.metrics.endpoint(scope["path"]), 401, 0.0)
        if kind == "websocket":
            await receive()  # websocket.connect; closing before accept refuses the handshake (HTTP 403)
            await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong bearer token"})
            return
        body = error_body(401, "missing or wrong bearer token; send the header 'Authorization: Bearer <token>' "
                               "with the token from the server's --token-file")
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="embodia"')]})
        await send({"type": "http.response.body", "body": body})

    def _authorized(self, scope: dict) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                # compare_digest's time does not depend on where the strings differ; the scheme is case-insensitive
                given = value[:7].lower() + value[7:]
                return hmac.compare_digest(given, self.expected)
        return False
