"""Checks of paths the user gave, with messages that say exactly what is wrong (missing, a file, a directory)."""

from __future__ import annotations

from pathlib import Path

from embodia.core.errors import UserError


def require_dir(path: str | Path, what: str = "directory", *, error_cls: type[UserError] = UserError,
                hint: str = "") -> Path:
    """`path` as a Path if it is an existing directory, else `error_cls` saying it is missing or is a file."""
    return _require(Path(path), Path.is_dir, "is a file, not a directory", what, error_cls, hint)


def require_file(path: str | Path, what: str = "file", *, error_cls: type[UserError] = UserError,
                 hint: str = "") -> Path:
    """`path` as a Path if it is an existing file, else `error_cls` saying it is missing or is a directory."""
    return _require(Path(path), Path.is_file, "is a directory, not a file", what, error_cls, hint)


def _require(path: Path, is_wanted, other_kind: str, what: str, error_cls: type[UserError], hint: str) -> Path:
    if is_wanted(path):
        return path
    state = other_kind if path.exists() else "does not exist"
    raise error_cls(f"{what} {path} {state}" + (f"; {hint}" if hint else ""))
