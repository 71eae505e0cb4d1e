"""`embodia server` (the platform's REST API; not the policy server `embodia serve`) and `embodia token create`.

Both open the workspace of `EMBODIA_HOME` (default `./.embodia`) or the database of `EMBODIA_DB_URL`.
"""

from __future__ import annotations

import os

import typer
from rich.console import Console

token_app = typer.Typer(help="API tokens for `embodia server` (one project, one scope each).", no_args_is_help=True)
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

    from embodia.core.errors import UserError
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


def register(app: typer.Typer) -> None:
    """Mount `server` and `token` on the main app."""
    app.command("server")(server_command)
    app.add_typer(token_app, name="token")
