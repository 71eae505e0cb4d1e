"""The `embodia` command: one Typer app with a sub-command group per layer-2/3 area.

Each area lives in its own module here (`sim.py`, `data.py`, `train.py`, `evaluate.py`, `serve.py`);
heavy imports happen inside commands so `embodia --help` stays fast. Errors from embodia's own
checks become one red line and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

app = typer.Typer(name="embodia", help="Open Physical AI platform: simulate, generate data, train, evaluate, serve.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console(stderr=True)

# (module, attribute, mount name or None to merge top-level commands)
_AREAS = [
    ("embodia.cli.sim", "sim_app", "sim"),
    ("embodia.cli.sim", "tasks_app", "tasks"),
    ("embodia.cli.quickstart", "register", None),
    ("embodia.cli.data", "data_app", "data"),
    ("embodia.cli.train", "register", None),
    ("embodia.cli.evaluate", "eval_app", "eval"),
    ("embodia.cli.serve", "register", None),
    ("embodia.cli.platform", "register", None),
]


def _mount_areas() -> None:
    for module_name, attribute, mount in _AREAS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue  # that area is not built yet
            raise
        target = getattr(module, attribute)
        if mount is None:
            target(app)
        else:
            app.add_typer(target, name=mount)


_mount_areas()


def main() -> None:
    """Console entry point: run the app, turning user errors into one clear line."""
    try:
        app()
    except (ValueError, KeyError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
