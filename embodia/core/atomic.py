"""Atomic writes, one implementation: write a temporary sibling, fsync, rename over the target.

A crash at any point leaves either the previous good file/directory or the new one, never a mix, and
temporary names start with `.` and end in `.tmp-<pid>` so they are recognisable and cleaned on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _naming_target(error: OSError, tmp: Path, path: Path) -> OSError:
    """The same OS error, naming `path` instead of the temporary file a user never asked for (or no file at all)."""
    if error.errno is None or (error.filename is not None and Path(str(error.filename)) != tmp):
        return error
    return OSError(error.errno, error.strerror, str(path))  # OSError picks the subclass from errno


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` so readers see the old or the new content, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise _naming_target(error, tmp, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload: Any, *, indent: int | None = 2) -> Path:
    """Write strict JSON (no NaN/Infinity, which are not JSON) atomically."""
    return atomic_write_text(path, json.dumps(payload, indent=indent, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_file(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write (e.g. by a library that wants a file name); renamed onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{suffix or path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        raise _naming_target(error, tmp, path) from None
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside `out`; on success it replaces `out` whole, on error it is removed.

    An existing `out` is moved aside first and deleted only after the new tree is in place, so a crash leaves
    either the old tree, the new tree, or (between the two renames) the old tree under `.<name>.old-<pid>`.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)


def replace_dir(new: Path, out: Path) -> None:
    """Move directory `new` onto `out`, replacing an existing `out` with at most one instant of absence."""
    if out.is_dir() and not out.is_symlink():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.exists() or out.is_symlink():
            out.unlink()
        os.replace(new, out)


@contextlib.contextmanager
def exclusive_lock(path: str | Path, holder: str) -> Iterator[Path]:
    """Hold an exclusive `flock` on `path` (created if needed) for the block, so two writers of the same output
    (a run and its `--resume`, two resumes) never race; a lock held elsewhere is a `UserError` naming `holder`.

    The kernel drops the lock when the holding process dies, so a crash never leaves a stale lock behind.
    """
    import fcntl

    from embodia.core.errors import UserError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as error:
        raise UserError(f"cannot create {path} ({error.strerror}); choose a writable output directory") from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{path} is locked: another process is running {holder}; wait for it to finish "
                            "or stop it, then retry") from None
        yield path
    finally:
        handle.close()
