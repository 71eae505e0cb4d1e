"""Run the policy server: in the foreground under uvicorn (`embodia serve`), or in a background thread
for tests and evaluation (`serve_in_background`)."""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from embodia.core.errors import UserError
from embodia.serve.runtime import load_model
from embodia.serve.service import PolicyService


class ServerConfig(BaseModel):
    """How to serve one ONNX policy."""

    model_config = ConfigDict(extra="forbid")

    model_path: Path = Field(description="ONNX policy file written by `embodia export`")
    host: str = Field("127.0.0.1", description="interface to listen on (0.0.0.0 for all)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one)")
    framework: Literal["asgi", "fastapi"] = Field(
        "asgi", description="'asgi': the lean built-in ASGI app (default, lower latency); 'fastapi': same service "
                            "on FastAPI")
    max_batch: int = Field(1024, ge=1, description="largest batch of observations one request may carry")
    intra_op_threads: int = Field(1, ge=0, description="ONNX Runtime intra-op threads (0 = one per core)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "warning", description="uvicorn log level")
    http: Literal["auto", "httptools", "h11"] = Field(
        "auto", description="HTTP parser: 'auto' takes httptools (C, faster) when installed, else h11")
    loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="event loop: 'auto' takes uvloop (faster) when installed, else asyncio")


def build_app(config: ServerConfig):
    """Load the model and build the ASGI application that serves it (raises on a bad model file)."""
    model = load_model(config.model_path, intra_op_threads=config.intra_op_threads)
    service = PolicyService(model, max_batch=config.max_batch)
    if config.framework == "fastapi":
        from embodia.serve.fastapi_app import make_fastapi_app

        return make_fastapi_app(service)
    from embodia.serve.app import PolicyApp

    return PolicyApp(service)


def _uvicorn_config(app, config: ServerConfig):
    import uvicorn

    # access logs off: writing one line per request costs more than the inference itself
    return uvicorn.Config(app, host=config.host, port=config.port, workers=1, log_level=config.log_level,
                          access_log=False, lifespan="on", ws_max_size=16 * 1024 * 1024, http=config.http,
                          loop=config.loop)


def run_server(config: ServerConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until interrupted (Ctrl-C); `on_ready(url)` is called once listening."""
    import uvicorn

    app = build_app(config)
    listener = _bind(config.host, config.port)
    server = uvicorn.Server(_uvicorn_config(app, config))
    if on_ready is not None:
        on_ready(_url(config.host, listener.getsockname()[1]))
    # the loaded libraries' objects never die: keep them out of the collector so gen-2 passes stay short
    gc.collect()
    gc.freeze()
    server.run(sockets=[listener])


def serve_in_background(model_path: str | Path, port: int = 0, host: str = "127.0.0.1",
                        startup_timeout_s: float = 30.0, **config: object) -> tuple[str, Callable[[], None]]:
    """Start a server in a daemon thread; return its URL and a `stop()` that shuts it down and waits."""
    import uvicorn

    server_config = ServerConfig(model_path=Path(model_path), host=host, port=port, **config)
    app = build_app(server_config)  # a bad model raises here, in the caller's thread
    listener = _bind(host, port)
    server = uvicorn.Server(_uvicorn_config(app, server_config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="embodia-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            listener.close()
            raise RuntimeError(f"policy server for {model_path} did not start within {startup_timeout_s} s")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10.0)
        listener.close()

    return _url(host, listener.getsockname()[1]), stop


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves so port 0 yields a known free port before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0) so asyncio recognises accepted sockets as TCP and sets TCP_NODELAY on them;
    # NODELAY on the listener too (Linux copies it to accepted sockets): without it a reply written in two
    # pieces waits ~40 ms for the client's delayed ACK
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror}); pick another --port or --host") from None
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"
