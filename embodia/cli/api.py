"""`embodia server` (the platform's REST API; not the policy server `embodia serve`) and `embodia token create`.

Both open the workspace of `EMBODIA_HOME` (default `./.embodia`) or the database of `EMBODIA_DB_URL`.
"""

from __future__ import annotations

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
                                                       "sign-in link opens (as an admin)")) -> None:
    """Serve the platform's REST API (/api/v1, docs at /docs) and web console (/console) over this workspace."""
    import uvicorn

    from embodia.core.errors import UserError
    from embodia.platform.api.app import create_app
    from embodia.platform.api.console import login_link
    from embodia.platform.store import open_store

    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise UserError("TLS needs both --ssl-certfile and --ssl-keyfile")
    store = open_store()
    app = create_app(store, max_body_bytes=max_body_mb << 20, rate_per_minute=rate_per_minute)
    scheme = "https" if ssl_certfile else "http"
    base = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"
    console.print(f"embodia API on {base}/api/v1 (docs: /docs), workspace {store.url}", highlight=False)
    link = login_link(app, console_project, base)
    print(f"console: {link}\n  (a one-time sign-in link; open it with: xdg-open '{link}')", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, log_level="info")
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    """Mount `server` and `token` on the main app."""
    app.command("server")(server_command)
    app.add_typer(token_app, name="token")
