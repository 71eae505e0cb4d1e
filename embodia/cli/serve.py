"""`embodia serve MODEL.onnx`: serve an exported policy over HTTP and WebSocket."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def serve(
    model: Annotated[Path, typer.Argument(help="ONNX policy file written by `embodia export`")],
    port: int = typer.Option(8000, help="TCP port (0 picks a free one)"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 for all)"),
    framework: str = typer.Option("asgi", help="'asgi' (lean, default) or 'fastapi'"),
    max_batch: int = typer.Option(1024, help="largest batch of observations per request"),
    intra_op_threads: int = typer.Option(1, help="ONNX Runtime intra-op threads (0 = one per core)"),
    log_level: str = typer.Option("warning", help="uvicorn log level"),
    http: str = typer.Option("auto", help="HTTP parser: auto, httptools or h11"),
    loop: str = typer.Option("auto", help="event loop: auto, uvloop or asyncio"),
) -> None:
    """Serve MODEL: POST /act, WebSocket /stream, GET /healthz, /metadata, /metrics."""
    from embodia.core.config import validate_config
    from embodia.serve.server import ServerConfig, run_server

    config = validate_config(ServerConfig, dict(model_path=model, host=host, port=port, framework=framework,
                                                max_batch=max_batch, intra_op_threads=intra_op_threads,
                                                log_level=log_level, http=http, loop=loop),
                             flags=True, names={"model_path": "MODEL"})

    def announce(url: str) -> None:
        console.print(f"serving [bold]{model}[/] at {url}  (POST /act, WS /stream, GET /healthz /metadata /metrics)",
                      highlight=False, soft_wrap=True)

    run_server(config, on_ready=announce)


def register(app: typer.Typer) -> None:
    """Add the top-level `serve` command to the embodia CLI."""
    app.command("serve")(serve)
