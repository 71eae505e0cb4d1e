"""The policy server as a plain ASGI application (no framework): /act, /stream, /healthz, /metadata, /metrics.

A raw ASGI callable is the default because it answers /act faster than the same service under FastAPI
(see benchmarks/results/serve.md); `embodia.serve.fastapi_app` carries the same service for comparison.
Inference runs inline on the event loop: one small MLP batch takes tens of microseconds, less than a
hand-off to a thread pool would cost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from embodia.serve.codec import SHAPE_HEADER, RequestError, error_body
from embodia.serve.limits import read_body
from embodia.serve.service import CLOSE_AFTER, PolicyService, Reply

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_GET_ROUTES = {"/healthz": PolicyService.healthz, "/metadata": PolicyService.metadata,
               "/metrics": PolicyService.metrics_text}
_ALLOWED = {"/act": "POST", "/healthz": "GET", "/metadata": "GET", "/metrics": "GET", "/stream": "GET (WebSocket)"}


class ClientDisconnected(Exception):
    """The client went away before sending the whole request body."""


class PolicyApp:
    """ASGI callable serving one policy."""

    def __init__(self, service: PolicyService, request_timeout_s: float = 10.0):
        self.service = service
        self.metrics = service.metrics
        self.request_timeout_s = request_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send, self.service.close)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        path = scope["path"]
        self.metrics.in_flight += 1
        try:
            reply = await self._route(scope, path, receive)
        except ClientDisconnected:
            return
        finally:
            self.metrics.in_flight -= 1
        await _send_reply(send, reply)
        self.metrics.record_request(self.metrics.endpoint(path), reply.status, time.perf_counter() - start)

    async def _route(self, scope: Scope, path: str, receive: Receive) -> Reply:
        method = scope["method"]
        if path == "/act" and method == "POST":
            headers = _headers(scope)
            try:
                body = await read_body(_body_chunks(receive), headers.get("content-length"),
                                       self.service.max_body_bytes, self.request_timeout_s)
            except RequestError as error:
                return self.service.error(error.status, error.message)
            return await self.service.off_loop(len(body), self.service.act, body, headers.get("content-type", ""),
                                               headers.get(SHAPE_HEADER))
        handler = _GET_ROUTES.get(path)
        if handler is not None and method in ("GET", "HEAD"):
            return handler(self.service)
        if path in _ALLOWED:
            return self.service.error(405, f"{method} {path} is not allowed; use {_ALLOWED[path]}")
        return self.service.error(404, f"no endpoint {path}; endpoints: {', '.join(_ALLOWED)}")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()  # websocket.connect
        if message["type"] != "websocket.connect":
            return
        if scope["path"] != "/stream":
            await send({"type": "websocket.close", "code": 1008, "reason": f"no stream at {scope['path']}; use /stream"})
            return
        await send({"type": "websocket.accept"})
        self.metrics.record_request("/stream", 101, 0.0)
        self.metrics.stream_connections += 1
        try:
            await self._stream_loop(receive, send)
        finally:
            self.metrics.stream_connections -= 1

    async def _stream_loop(self, receive: Receive, send: Send) -> None:
        """One action frame back per observation frame, errors as JSON text frames; the stream stays open."""
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return  # websocket.disconnect
            start = time.perf_counter()
            frame, text = message.get("bytes"), message.get("text")
            try:
                if frame is not None:
                    reply = {"type": "websocket.send",
                             "bytes": await self.service.off_loop(len(frame), self.service.stream_frame, frame)}
                else:
                    text = text or ""
                    reply = {"type": "websocket.send",
                             "text": await self.service.off_loop(len(text), self.service.stream_text, text)}
                status = 200
            except RequestError as error:
                reply = {"type": "websocket.send", "text": error_body(error.status, error.message).decode()}
                status = error.status
            await send(reply)
            self.metrics.record_request("/stream", status, time.perf_counter() - start)


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        yield message.get("body", b"")
        more = message.get("more_body", False)


async def _send_reply(send: Send, reply: Reply) -> None:
    headers = [(b"content-type", reply.content_type.encode()), (b"content-length", str(len(reply.body)).encode())]
    if reply.shape is not None:
        headers.append((SHAPE_HEADER.encode(), reply.shape.encode()))
    if reply.status in CLOSE_AFTER:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send, on_shutdown: Callable[[], None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
