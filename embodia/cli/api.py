"""`embodia server` (the platform's REST API and web console; not the policy server `embodia serve`),
`embodia console start|stop` (that server detached, as `make demo` leaves it) and `embodia token create`.

All open the workspace of `EMBODIA_HOME` (default `./.embodia`) or the database of `EMBODIA_DB_URL`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

from embodia.core.errors import UserError

token_app = typer.Typer(help="API tokens for `embodia server` (one project, one scope each).", no_args_is_help=True)
console_app = typer.Typer(help="The web console: `embodia server` started detached on 127.0.0.1, or stopped.",
                          no_args_is_help=True)
CONSOLE_START_TIMEOUT_S = 60.0
LINK_LINE = re.compile(r"^console: (http\S+/console/login\?once=\S+)$", re.MULTILINE)
console = Console(soft_wrap=True)


@token_app.command("create")
def token_create(project: str = typer.Option(..., help="the project (tenant) the token belongs to"),
                 scope: str = typer.Option("read", help="read (look), run (submit/cancel) or admin (everything)"),
                 name: str = typer.Option("", help="a label kept with the token")) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from embodia.platform.api.auth import create_token
    from embodia.platform.store import open_store

    store = open_store()
    try:
        secret = create_token(store, project, scope, name)
    finally:
        store.close()
    console.print(f"token for project {project} (scope {scope}); shown only now, keep it secret:", highlight=False)
    print(secret)


def server_command(host: str = typer.Option("127.0.0.1", help="address to bind (default: this machine only)"),
                   port: int = typer.Option(8100, min=1, max=65535, help="TCP port"),
                   ssl_certfile: str = typer.Option(None, help="TLS certificate (PEM); serve HTTPS with --ssl-keyfile"),
                   ssl_keyfile: str = typer.Option(None, help="TLS private key (PEM)"),
                   rate_per_minute: int = typer.Option(600, min=1, max=10**6, help="requests a minute per token"),
                   max_body_mb: int = typer.Option(64, min=1, max=10_000, help="largest request body, MiB"),
                   console_project: str = typer.Option("default", help="project the printed one-time console "
                                                       "sign-in link opens (as an admin)"),
                   workers: int = typer.Option(1, min=1, max=64,
                                               help="API server processes; with more than 1 the web console is off "
                                                    "(its sign-in links and sessions live in one process) and each "
                                                    "process keeps its own rate limits and token cache"),
                   ) -> None:
    """Serve the platform's REST API (/api/v1, docs at /docs) and web console (/console) over this workspace."""
    import uvicorn

    from embodia.platform.api.app import SETTINGS_ENV, ServerSettings, create_app
    from embodia.platform.api.console import login_link
    from embodia.platform.store import open_store

    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise UserError("TLS needs both --ssl-certfile and --ssl-keyfile")
    settings = ServerSettings(max_body_bytes=max_body_mb << 20, rate_per_minute=rate_per_minute)
    store = open_store()  # migrates the database once, before any worker opens it
    scheme = "https" if ssl_certfile else "http"
    base = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"
    console.print(f"embodia API on {base}/api/v1 (docs: /docs), workspace {store.url}, "
                  f"{workers} worker process{'es' if workers > 1 else ''}", highlight=False)
    tls = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
    try:
        if workers == 1:
            app = create_app(store, max_body_bytes=settings.max_body_bytes, rate_per_minute=settings.rate_per_minute)
            link = login_link(app, console_project, base)
            print(f"console: {link}\n  (a one-time sign-in link; open it with: xdg-open '{link}')", flush=True)
            uvicorn.run(app, host=host, port=port, log_level="info", **tls)
            return
        print("console: off with --workers > 1 (run `embodia server --workers 1` for the web console)", flush=True)
        os.environ[SETTINGS_ENV] = settings.to_env()
        uvicorn.run("embodia.platform.api.app:app_from_environment", factory=True, workers=workers, host=host,
                    port=port, log_level="info", **tls)
    finally:
        store.close()


@console_app.command("start")
def console_start(port: int = typer.Option(8100, min=0, max=65535, help="TCP port (taken or 0: a free one)"),
                  project: str = typer.Option("default", help="project the one-time sign-in link opens")) -> None:
    """Start `embodia server` detached on 127.0.0.1 (replacing one this workspace already runs) and print the
    console's one-time sign-in URL and the command that opens it."""
    from embodia.platform.deploy import free_port
    from embodia.platform.store import open_store

    store = open_store()
    home = store.home
    store.close()
    _stop_console(home)
    port = port if port and _port_free(port) else free_port()
    link = _spawn_console(home, port, project)
    console.print(f"console: {link}", highlight=False, soft_wrap=True)
    console.print(f"  open it with: xdg-open '{link}'   (the link signs in once; stop with: embodia console stop)",
                  highlight=False, soft_wrap=True)


@console_app.command("stop")
def console_stop() -> None:
    """Stop the detached console server of this workspace."""
    from embodia.platform.store import open_store

    store = open_store()
    home = store.home
    store.close()
    stopped = _stop_console(home)
    console.print(f"stopped the console server (pid {stopped})" if stopped else "no console server was running",
                  highlight=False)


def _state_path(home: Path) -> Path:
    return Path(home) / "console" / "server.json"


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _spawn_console(home: Path, port: int, project: str) -> str:
    """Start the server in its own session with its output in <home>/console/server.log (private: it holds the
    one-time link); wait for its link line and for /console/login to answer; record its pid and port."""
    from embodia.core.atomic import atomic_write_text

    folder = _state_path(home).parent
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "server.log"
    with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "embodia", "server", "--host", "127.0.0.1", "--port",
                                   str(port), "--console-project", project], stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True, env=_child_env())
    link = _wait_for_link(server, log_path, port)
    atomic_write_text(_state_path(home), json.dumps({"pid": server.pid, "port": port, "log": str(log_path)}))
    return link


def _child_env() -> dict[str, str]:
    """The server imports the same embodia as this process, wherever it was imported from."""
    env = dict(os.environ)
    source = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH", "")) if p)
    return env


def _wait_for_link(server: subprocess.Popen, log_path: Path, port: int) -> str:
    deadline = time.monotonic() + CONSOLE_START_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        found = LINK_LINE.search(log_path.read_text(errors="replace"))
        if found and _answers(f"http://127.0.0.1:{port}/console/login"):
            return found.group(1)
        time.sleep(0.2)
    if server.poll() is None:
        server.terminate()
        server.wait(10)
    tail = log_path.read_text(errors="replace")[-1500:]
    raise UserError(f"the console server did not start within {CONSOLE_START_TIMEOUT_S:.0f} s; its log "
                    f"{log_path}:\n{tail}")


def _answers(url: str) -> bool:
    import urllib.error  # with http.client and ssl: only when the console is started
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop_console(home: Path) -> int | None:
    """SIGTERM the recorded console server if it is still ours (an `embodia server` process); its pid or None."""
    path = _state_path(home)
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    path.unlink(missing_ok=True)
    if not _is_console_server(pid):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _is_console_server(pid):
        time.sleep(0.1)
    if _is_console_server(pid):
        os.kill(pid, signal.SIGKILL)
    return pid


def _is_console_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
    except OSError:
        return False
    return state != "Z" and b"embodia" in cmdline and b"server" in cmdline


def register(app: typer.Typer) -> None:
    """Mount `server`, `console` and `token` on the main app."""
    app.command("server")(server_command)
    app.add_typer(console_app, name="console")
    app.add_typer(token_app, name="token")
