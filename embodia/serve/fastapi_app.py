"""The same policy service carried by FastAPI (`embodia serve --framework fastapi`), kept to measure against
the raw ASGI app and for users who want to mount it into a larger FastAPI application."""

from __future__ import annotations

import time

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from starlette.requests import ClientDisconnect

from embodia.serve.codec import SHAPE_HEADER, RequestError, error_body
from embodia.serve.limits import read_body
from embodia.serve.service import CLOSE_AFTER, PolicyService, Reply


def make_fastapi_app(service: PolicyService, request_timeout_s: float = 10.0) -> FastAPI:
    """A FastAPI app with /act, /stream, /healthz, /metadata, /metrics backed by `service`."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        service.close()

    app = FastAPI(title=f"embodia policy server ({service.spec.task})", docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    metrics = service.metrics

    def respond(endpoint: str, reply: Reply, start: float) -> Response:
        metrics.record_request(endpoint, reply.status, time.perf_counter() - start)
        headers = {SHAPE_HEADER: reply.shape} if reply.shape is not None else {}
        if reply.status in CLOSE_AFTER:
            headers["connection"] = "close"
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=headers)

    @app.post("/act")
    async def act(request: Request) -> Response:
        start = time.perf_counter()
        metrics.in_flight += 1
        try:
            body = await read_body(request.stream(), request.headers.get("content-length"), service.max_body_bytes,
                                   request_timeout_s)
            reply = await service.off_loop(len(body), service.act, body, request.headers.get("content-type", ""),
                                           request.headers.get(SHAPE_HEADER))
        except RequestError as error:
            reply = service.error(error.status, error.message)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        finally:
            metrics.in_flight -= 1
        return respond("/act", reply, start)

    @app.get("/healthz")
    async def healthz() -> Response:
        return respond("/healthz", service.healthz(), time.perf_counter())

    @app.get("/metadata")
    async def metadata() -> Response:
        return respond("/metadata", service.metadata(), time.perf_counter())

    @app.get("/metrics")
    async def metrics_text() -> Response:
        metrics.in_flight += 1  # count this scrape, as the ASGI app does
        try:
            return respond("/metrics", service.metrics_text(), time.perf_counter())
        finally:
            metrics.in_flight -= 1

    @app.websocket("/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        metrics.record_request("/stream", 101, 0.0)
        metrics.stream_connections += 1
        try:
            while True:
                message = await websocket.receive()
                if message["type"] != "websocket.receive":
                    return
                start = time.perf_counter()
                frame, text = message.get("bytes"), message.get("text") or ""
                try:
                    if frame is not None:
                        await websocket.send_bytes(await service.off_loop(len(frame), service.stream_frame, frame))
                    else:
                        await websocket.send_text(await service.off_loop(len(text), service.stream_text, text))
                    status = 200
                except RequestError as error:
                    await websocket.send_text(error_body(error.status, error.message).decode())
                    status = error.status
                metrics.record_request("/stream", status, time.perf_counter() - start)
        except WebSocketDisconnect:
            return
        finally:
            metrics.stream_connections -= 1

    return app
