"""Checks of paths the user gave, with messages that say exactly what is wrong (missing, a file, a directory)."""

from __future__ import annotations

from pathlib import Path

from embodia.core.errors import UserError


def require_dir(path: str | Path, what: str = "directory", *, error_cls: type[UserError] = UserError,
                hint: str = "") -> Path:
    """`path` as a Path if it is an existing directory, else `error_cls` saying it is missing or is a file."""
    path = Path(path)
    if not path.is_dir():
        state = "is a file, not a directory" if path.exists() else "does not exist"
        raise error_cls(f"{what} {path} {state}" + (f"; {hint}" if hint else ""))
    return path


def require_file(path: str | Path, what: str = "file", *, error_cls: type[UserError] = UserError,
                 hint: str = "") -> Path:
    """`path` as a Path if it is an existing file, else `error_cls` saying it is missing or is a directory."""
    path = Path(path)
    if not path.is_file():
        state = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise error_cls(f"{what} {path} {state}" + (f"; {hint}" if hint else ""))
    return path
