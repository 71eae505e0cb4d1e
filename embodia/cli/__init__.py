"""The `embodia` command: one Typer app with a sub-command group per layer-2/3 area.

Each area lives in its own module here (`sim.py`, `data.py`, `train.py`, `evaluate.py`, `serve.py`);
heavy imports happen inside commands so `embodia --help` stays fast. Exit codes: 0 ok, 1 a negative
verdict (a failed gate, a corrupt dataset), 2 bad input (a `UserError`, an OS error on a path the user gave,
or a usage error: one red line on stderr, no traceback), 3 an internal error (a bug: traceback shown), 130 Ctrl-C.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from embodia.core.errors import Cancelled, UserError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
EXIT_CANCELLED = 130

# errno values that mean "the path the user gave is wrong", not "embodia has a bug"
PATH_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST,
                         errno.ENOSPC, errno.EROFS, errno.ENAMETOOLONG, errno.ENOTEMPTY, errno.EDQUOT, errno.ELOOP})

console = Console(stderr=True)


def error_line(message: str) -> None:
    """Print `error: <message>` as one red line on stderr (markup in the message is shown literally)."""
    text = " ".join(str(message).split())
    console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


def path_error_message(error: OSError) -> str | None:
    """One line for an OS error on a path (naming the path), or None when it is not about a path."""
    if error.errno not in PATH_ERRNOS or not error.filename:
        return None
    paths = " -> ".join(str(name) for name in (error.filename, error.filename2) if name)
    return f"{paths}: {error.strerror or os.strerror(error.errno)}"


class EmbodiaGroup(TyperGroup):
    """The root command group: turns the error tree into exit codes and one-line messages.

    Handling happens here (not only in `main`) so that in-process runs (`CliRunner`, notebooks) see the same
    exit codes and stderr as the console script.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        """Run the sub-command; a `UserError` or an OS error on a path becomes one line and exit code 2."""
        try:
            return super().invoke(ctx)
        except UserError as error:
            _fail(str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error))
        except Cancelled as error:
            error_line(f"cancelled: {error}" if str(error) else "cancelled")
            raise typer.Exit(EXIT_CANCELLED) from None
        except OSError as error:
            message = path_error_message(error)
            if message is None:
                raise
            _fail(message)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Click's main, with usage errors (bad option values, unknown options) printed as one line too."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as error:  # Click's usage errors (vendored by Typer) derive from it
            if type(error).__name__ == "NoArgsIsHelpError":  # the help was printed already
                sys.exit(error.exit_code)
            command = error.ctx.command_path if getattr(error, "ctx", None) is not None else "embodia"
            message = _non_finite_message(error, sys.argv[1:] if args is None else list(args)) or error.format_message()
            error_line(f"{message} (see `{command} --help`)")
            sys.exit(error.exit_code)
        except typer.Abort:
            error_line("aborted")
            sys.exit(EXIT_CANCELLED)
        sys.exit(result if isinstance(result, int) else 0)


def _non_finite_message(error: Exception, args: list[str]) -> str | None:
    """'--margin: nan is not a finite number' where Click would only report the range NaN or inf fails."""
    param = getattr(error, "param", None)
    for flag in getattr(param, "opts", None) or []:
        for index, token in enumerate(args):
            value = args[index + 1] if token == flag and index + 1 < len(args) else None
            value = token.split("=", 1)[1] if token.startswith(flag + "=") else value
            if value is not None and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
                return f"Invalid value for '{flag}': {value} is not a finite number"
    return None


def _fail(message: str) -> NoReturn:
    error_line(message)
    raise typer.Exit(EXIT_USER_ERROR)


app = typer.Typer(name="embodia", help="Open Physical AI platform: simulate, generate data, train, evaluate, serve.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, cls=EmbodiaGroup,
                  rich_markup_mode=None)  # plain Click help (every group and command inherits it): Typer's Rich
                                          # help formatter imports rich.markdown/traceback, most of `--help`'s time

# (module, attribute, mount name or None to merge top-level commands)
_AREAS = [
    ("embodia.cli.sim", "sim_app", "sim"),
    ("embodia.cli.sim", "tasks_app", "tasks"),
    ("embodia.cli.pipeline", "register", None),
    ("embodia.cli.data", "data_app", "data"),
    ("embodia.cli.train", "register", None),
    ("embodia.cli.evaluate", "eval_app", "eval"),
    ("embodia.cli.serve", "register", None),
    ("embodia.cli.platform", "register", None),
    ("embodia.cli.regions", "register", None),
    ("embodia.cli.api", "register", None),
    ("embodia.cli.teleop", "register", None),
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
    """Console entry point: user errors are handled by `EmbodiaGroup`; anything else is a bug, shown as such."""
    try:
        app()
    except Exception:  # noqa: BLE001  (the last line of defence: say it is a bug, with the traceback)
        traceback.print_exc()
        error_line("internal error: this is a bug in embodia, not in your input; please report it with the "
                   "traceback above")
        sys.exit(EXIT_INTERNAL_ERROR)
