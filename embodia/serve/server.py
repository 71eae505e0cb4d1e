"""Run the policy server: in the foreground under uvicorn (`embodia serve`), or in a background thread
for tests and evaluation (`serve_in_background`)."""

from __future__ import annotations

import gc
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from embodia.core.errors import ConfigError
from embodia.serve.limits import MAX_HEADER_BYTES, guarded_protocol
from embodia.serve.runtime import load_model
from embodia.serve.service import PolicyService

WILDCARD_HOSTS = ("0.0.0.0", "", "::")


class ServerConfig(BaseModel):
    """How to serve one ONNX policy."""

    model_config = ConfigDict(extra="forbid")

    model_path: Path = Field(description="ONNX policy file written by `embodia export`")
    host: str = Field("127.0.0.1", description="interface to listen on (0.0.0.0 for all)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one)")
    framework: Literal["asgi", "fastapi"] = Field(
        "asgi", description="'asgi': the lean built-in ASGI app (default, lower latency); 'fastapi': same service "
                            "on FastAPI")
    max_batch: int = Field(1024, ge=1, le=1_000_000, description="largest batch of observations one request may carry")
    intra_op_threads: int = Field(1, ge=0, le=1024, description="ONNX Runtime intra-op threads (0 = one per core)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "warning", description="uvicorn log level")
    http: Literal["auto", "httptools", "h11"] = Field(
        "auto", description="HTTP parser: 'auto' takes httptools (C, faster) when installed, else h11")
    loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="event loop: 'auto' takes uvloop (faster) when installed, else asyncio")
    keep_alive_s: float = Field(5.0, gt=0, le=3600, allow_inf_nan=False,
                                description="close a keep-alive connection idle this long after a reply")
    request_timeout_s: float = Field(10.0, gt=0, le=3600, allow_inf_nan=False,
                                     description="time a client has to send a request's headers, and again its "
                                                 "body; a connection that sends nothing is closed after it")
    max_connections: int = Field(1000, ge=1, le=1_000_000,
                                 description="open connections (HTTP and /stream) beyond which requests get 503")
    token_file: Path | None = Field(None, description="file holding a bearer token every endpoint but /healthz "
                                                      "requires (Authorization: Bearer TOKEN)")
    ssl_keyfile: Path | None = Field(None, description="TLS private key (PEM); serve HTTPS/WSS with --ssl-certfile")
    ssl_certfile: Path | None = Field(None, description="TLS certificate chain (PEM); serve HTTPS/WSS with "
                                                        "--ssl-keyfile")

    @model_validator(mode="after")
    def _tls_needs_both_files(self) -> "ServerConfig":
        if (self.ssl_keyfile is None) != (self.ssl_certfile is None):
            raise ValueError("TLS needs both --ssl-keyfile and --ssl-certfile (or neither)")
        return self

    @property
    def scheme(self) -> str:
        """'https' when TLS is on, else 'http'."""
        return "http" if self.ssl_certfile is None else "https"


def build_app(config: ServerConfig):
    """Load the model and build the ASGI application that serves it (raises on a bad model file)."""
    return _build(config)[0]


def _build(config: ServerConfig) -> tuple[object, PolicyService]:
    model = load_model(config.model_path, intra_op_threads=config.intra_op_threads)
    service = PolicyService(model, max_batch=config.max_batch)
    if config.framework == "fastapi":
        from embodia.serve.fastapi_app import make_fastapi_app

        app = make_fastapi_app(service, request_timeout_s=config.request_timeout_s)
    else:
        from embodia.serve.app import PolicyApp

        app = PolicyApp(service, request_timeout_s=config.request_timeout_s)
    if config.token_file is not None:
        from embodia.serve.auth import BearerAuth, read_token

        app = BearerAuth(app, read_token(config.token_file), service.metrics)
    return app, service


def _uvicorn_config(config: ServerConfig):
    """uvicorn settings with every bound in place, loaded here so a bad TLS file fails in the caller."""
    import uvicorn

    app, service = _build(config)
    tls = {} if config.ssl_certfile is None else {"ssl_keyfile": str(config.ssl_keyfile),
                                                  "ssl_certfile": str(config.ssl_certfile)}
    # access logs off: writing one line per request costs more than the inference itself.
    # ws_max_size: a /stream frame is bounded like an /act body; a bigger one closes the stream with 1009
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, workers=1, log_level=config.log_level,
                               access_log=False, lifespan="on", ws_max_size=service.max_body_bytes,
                               http=guarded_protocol(config.http, config.request_timeout_s), loop=config.loop,
                               timeout_keep_alive=config.keep_alive_s, limit_concurrency=config.max_connections,
                               h11_max_incomplete_event_size=MAX_HEADER_BYTES, **tls)
    try:
        uv_config.load()
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(f"cannot use --ssl-keyfile {config.ssl_keyfile} / --ssl-certfile {config.ssl_certfile} "
                          f"({error}); pass a PEM private key and the PEM certificate that matches it") from None
    return uv_config


def run_server(config: ServerConfig, on_ready: Callable[[list[str]], None] | None = None) -> None:
    """Serve in the foreground until interrupted (Ctrl-C); `on_ready(urls)` is called once listening, with
    every address a client can reach (each interface's for a wildcard host)."""
    import uvicorn

    server = uvicorn.Server(_uvicorn_config(config))
    listener = _bind(config.host, config.port)
    if on_ready is not None:
        on_ready(reachable_urls(config.host, listener.getsockname()[1], config.scheme))
    # the loaded libraries' objects never die: keep them out of the collector so gen-2 passes stay short
    gc.collect()
    gc.freeze()
    server.run(sockets=[listener])


def serve_in_background(model_path: str | Path, port: int = 0, host: str = "127.0.0.1",
                        startup_timeout_s: float = 30.0, **config: object) -> tuple[str, Callable[[], None]]:
    """Start a server in a daemon thread; return its URL and a `stop()` that shuts it down and waits."""
    import uvicorn

    server_config = ServerConfig(model_path=Path(model_path), host=host, port=port, **config)
    server = uvicorn.Server(_uvicorn_config(server_config))  # a bad model or TLS file raises here, in the caller
    listener = _bind(host, port)
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

    return reachable_urls(host, listener.getsockname()[1], server_config.scheme)[0], stop


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
        raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror}); pick another --port or --host") from None
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


def reachable_urls(host: str, port: int, scheme: str = "http") -> list[str]:
    """Base URLs a client can use: the host itself, or for a wildcard (0.0.0.0, ::) loopback and then each
    local interface's address."""
    hosts = local_addresses(ipv6=host == "::") if host in WILDCARD_HOSTS else [host]
    return [f"{scheme}://{f'[{name}]' if ':' in name else name}:{port}" for name in hosts]


def local_addresses(ipv6: bool = False) -> list[str]:
    """Loopback first, then the addresses of this machine's interfaces (IPv4; IPv6 too when `ipv6`)."""
    found: list[str] = []
    for family in (socket.AF_INET, socket.AF_INET6) if ipv6 else (socket.AF_INET,):
        found += _addresses_of(family)
    loopback = [address for address in found if ipaddress.ip_address(address).is_loopback]
    others = [address for address in found if not ipaddress.ip_address(address).is_loopback
              and not ipaddress.ip_address(address).is_link_local]
    defaults = ["127.0.0.1"] + (["::1"] if ipv6 else [])
    return list(dict.fromkeys([*defaults, *loopback, *others]))


def _addresses_of(family: socket.AddressFamily) -> list[str]:
    """Interface addresses: the host name's addresses plus the one the default route leaves from."""
    names = []
    try:
        names += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)]
    except OSError:
        pass
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:  # connect() on UDP sends nothing; it only picks the source address of the default route
        probe.connect(("192.0.2.1", 9) if family == socket.AF_INET else ("2001:db8::1", 9))
        names.append(probe.getsockname()[0])
    except OSError:
        pass
    finally:
        probe.close()
    return [name.split("%", 1)[0] for name in names]
