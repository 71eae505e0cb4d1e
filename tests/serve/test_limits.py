"""Bounds that keep one client from holding the server (issue 9, item 4): body and frame size, header and body
deadlines, header size, connection limit, and large payloads kept off the event loop — on both frameworks."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from embodia.serve.runtime import load_model
from embodia.serve.server import serve_in_background
from embodia.serve.service import OFFLOAD_BYTES, PolicyService

from .conftest import MAX_BATCH, OBS_DIM

TIMEOUT_S = 0.5


@pytest.fixture(scope="module", params=["asgi", "fastapi"])
def strict_url(request: pytest.FixtureRequest, model_path: Path):
    """A live server per framework whose clients get TIMEOUT_S to send headers and body."""
    url, stop = serve_in_background(model_path, framework=request.param, max_batch=MAX_BATCH,
                                    request_timeout_s=TIMEOUT_S)
    yield url
    stop()


def _socket(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_connection_that_sends_nothing_is_closed(strict_url: str) -> None:
    with _socket(strict_url) as sock:
        assert _read_all(sock) == b""  # closed by the server; a held-open socket would time out the recv instead


def test_headers_sent_too_slowly_get_408_and_a_close(strict_url: str) -> None:
    with _socket(strict_url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 408") and b"not received within 0.5 s" in reply


def test_idle_keep_alive_connection_then_slow_headers_are_bounded_too(strict_url: str) -> None:
    with _socket(strict_url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request never finishes its headers
        assert _read_all(sock).startswith(b"HTTP/1.1 408")


def test_body_sent_too_slowly_gets_408(strict_url: str) -> None:
    with _socket(strict_url) as sock:
        sock.sendall(b"POST /act HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
                     b"\r\n{\"obs\": [")
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 408") and b"request body not received within 0.5 s" in reply


def test_oversized_headers_get_431(asgi_url: str) -> None:
    with _socket(asgi_url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000)
        assert _read_all(sock).startswith(b"HTTP/1.1 431")


def _send_until_answered(sock: socket.socket, chunks: int, chunk: bytes) -> bytes:
    """Send chunked-body chunks until the server answers (or drops the pipe), then read its whole reply.

    The server may close while unread body bytes are queued, which the kernel turns into a reset: stop
    sending as soon as a reply is readable and keep what arrived before any reset.
    """
    for _ in range(chunks):
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            break
    data = b""
    try:
        while piece := sock.recv(65536):
            data += piece
    except ConnectionResetError:
        pass
    return data


def test_chunked_body_over_the_limit_is_refused_while_it_streams(server_url: str) -> None:
    """The 413 comes once the limit is crossed, before the body ends (it never ends here)."""
    limit = MAX_BATCH * OBS_DIM * 32 + 4096
    chunk = b" " * 8192
    for _attempt in range(3):  # a reply lost to a TCP reset (a kernel race, not the server's answer) is retried
        with _socket(server_url) as sock:
            sock.sendall(b"POST /act HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            reply = _send_until_answered(sock, 2 * limit // len(chunk), chunk)  # no terminating chunk is sent
        if reply:
            break
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
    assert "exceeds the server limit" in orjson.loads(body)["error"]


def test_stream_frame_over_the_limit_closes_with_1009(server_url: str) -> None:
    limit = MAX_BATCH * OBS_DIM * 32 + 4096
    with connect(server_url.replace("http", "ws", 1) + "/stream", max_size=None) as websocket:
        websocket.send(np.zeros((limit // (4 * OBS_DIM) + 1, OBS_DIM), np.float32).tobytes())
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert httpx.get(f"{server_url}/healthz").status_code == 200


def test_connection_limit_answers_503_until_connections_close(model_path: Path) -> None:
    url, stop = serve_in_background(model_path, max_connections=3)
    try:
        idle = [_socket(url), _socket(url)]
        with httpx.Client() as client:  # fresh connection: the third one
            busy = client.get(f"{url}/healthz")
        for sock in idle:
            sock.close()
        assert busy.status_code == 503
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        stop()


@pytest.mark.parametrize("framework", ["asgi", "fastapi"])
def test_a_large_request_runs_off_the_event_loop_so_healthz_answers_meanwhile(model_path: Path,
                                                                              framework: str) -> None:
    service = PolicyService(load_model(model_path), max_batch=1024)
    started, release = threading.Event(), threading.Event()
    act = service.act

    def slow_act(*args: object):
        started.set()
        release.wait(timeout=5)  # holds whatever thread runs it; on the event loop, /healthz would wait too
        return act(*args)

    service.act = slow_act
    if framework == "fastapi":
        from embodia.serve.fastapi_app import make_fastapi_app

        app = make_fastapi_app(service)
    else:
        from embodia.serve.app import PolicyApp

        app = PolicyApp(service)
    body = orjson.dumps({"obs": np.full((800, OBS_DIM), 0.123456789).tolist()})
    assert OFFLOAD_BYTES < len(body) < service.max_body_bytes

    async def scenario() -> tuple[int, bool, int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            large = asyncio.create_task(client.post("/act", content=body,
                                                    headers={"content-type": "application/json"}))
            assert await asyncio.to_thread(started.wait, 5)
            health = await client.get("/healthz")
            still_running = not large.done()
            release.set()
            return health.status_code, still_running, (await large).status_code

    try:
        assert asyncio.run(scenario()) == (200, True, 200)
    finally:
        release.set()
        service.close()
