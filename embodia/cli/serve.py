"""`embodia serve MODEL.onnx`: serve an exported policy over HTTP and WebSocket."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from embodia.cli.options import MAX_BATCH, MAX_PORT, MAX_THREADS

console = Console(stderr=True)


def serve(
    model: Annotated[Path, typer.Argument(help="ONNX policy file written by `embodia export`")],
    port: int = typer.Option(8000, min=0, max=MAX_PORT, help="TCP port (0 picks a free one)"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 for all)"),
    framework: str = typer.Option("asgi", help="'asgi' (lean, default) or 'fastapi'"),
    max_batch: int = typer.Option(1024, min=1, max=MAX_BATCH, help="largest batch of observations per request"),
    intra_op_threads: int = typer.Option(1, min=0, max=MAX_THREADS, help="ONNX Runtime intra-op threads (0 = one per core)"),
    log_level: str = typer.Option("warning", help="uvicorn log level"),
    http: str = typer.Option("auto", help="HTTP parser: auto, httptools or h11"),
    loop: str = typer.Option("auto", help="event loop: auto, uvloop or asyncio"),
    keep_alive_s: float = typer.Option(5.0, min=0.001, max=3600.0, help="close a keep-alive connection idle this long after a reply"),
    request_timeout_s: float = typer.Option(10.0, min=0.001, max=3600.0, help="seconds a client has to send a request's headers, and "
                                                       "again its body; silent connections are closed after it"),
    max_connections: int = typer.Option(1000, min=1, max=1_000_000, help="open connections beyond which requests get 503"),
    token_file: Path | None = typer.Option(None, exists=True, dir_okay=False, help="require 'Authorization: Bearer TOKEN' (the file's "
                                                      "content) on every endpoint but /healthz"),
    ssl_keyfile: Path | None = typer.Option(None, exists=True, dir_okay=False, help="TLS private key (PEM), with --ssl-certfile: serve "
                                                       "https:// and wss://"),
    ssl_certfile: Path | None = typer.Option(None, exists=True, dir_okay=False, help="TLS certificate chain (PEM), with --ssl-keyfile"),
) -> None:
    """Serve MODEL: POST /act, WebSocket /stream, GET /healthz, /metadata, /metrics."""
    from embodia.core.config import validate_config
    from embodia.serve.server import ServerConfig, run_server

    config = validate_config(ServerConfig, dict(model_path=model, host=host, port=port, framework=framework,
                                                max_batch=max_batch, intra_op_threads=intra_op_threads,
                                                log_level=log_level, http=http, loop=loop, keep_alive_s=keep_alive_s,
                                                request_timeout_s=request_timeout_s, max_connections=max_connections,
                                                token_file=token_file, ssl_keyfile=ssl_keyfile,
                                                ssl_certfile=ssl_certfile),
                             flags=True, names={"model_path": "MODEL"})

    def announce(urls: list[str]) -> None:
        console.print(f"serving [bold]{model}[/] at {urls[0]}  (POST /act, WS /stream, GET /healthz /metadata "
                      "/metrics)", highlight=False, soft_wrap=True)
        for url in urls[1:]:
            console.print(f"  also reachable at {url}", highlight=False, soft_wrap=True)

    run_server(config, on_ready=announce)


def register(app: typer.Typer) -> None:
    """Add the top-level `serve` command to the embodia CLI."""
    app.command("serve")(serve)
