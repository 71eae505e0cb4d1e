"""Artifact manifests: what a stage made, from what, with which config and code, written next to every output.

`manifest.json` is the only file of an output that holds timestamps and host names, and it is excluded from
the output's content hash, so two identical runs give identical `content_sha256` values.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from embodia.core.errors import UserError

MANIFEST_FILE = "manifest.json"
KEY_PACKAGES = ("numpy", "mujoco", "torch", "onnxruntime", "gymnasium", "pyarrow")
ArtifactKind = Literal["dataset", "checkpoint", "model", "report", "comparison", "video", "other"]
_CHUNK = 1 << 20


class FileEntry(BaseModel):
    """One file of an output: its path relative to the output root, sha256 and size in bytes."""

    model_config = ConfigDict(extra="forbid")
    path: str
    sha256: str
    size: int


class InputEntry(BaseModel):
    """One input a stage read: a name (`dataset`, `checkpoint`, ...), where it was, and its content hash."""

    model_config = ConfigDict(extra="forbid")
    name: str
    path: str
    sha256: str
    kind: str = ""


class Manifest(BaseModel):
    """Provenance of one stage output; `content_sha256` identifies the output's content, not when it was made."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    kind: str = Field(description="artifact kind: dataset, checkpoint, model, report, comparison, video, other")
    stage: str = Field(description="stage that wrote it: generate, augment, train, export, evaluate, compare")
    status: Literal["complete", "cancelled", "failed"] = "complete"
    config: dict[str, Any] = Field(default_factory=dict, description="the effective config, after defaults")
    inputs: list[InputEntry] = Field(default_factory=list)
    outputs: list[FileEntry] = Field(default_factory=list)
    content_sha256: str = ""
    seeds: list[int] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict, description="embodia, python and key package versions")
    git_commit: str | None = None
    started_at: str = ""
    finished_at: str = ""
    host: str = ""
    user: str = ""
    summary: dict[str, Any] = Field(default_factory=dict, description="headline results (success rate, return, ...)")

    def write(self, root: str | Path) -> Path:
        """Write `root/manifest.json` atomically."""
        from embodia.core.atomic import atomic_write_text

        return atomic_write_text(Path(root) / MANIFEST_FILE, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, root: str | Path) -> "Manifest":
        """Read `root/manifest.json` (or a path to the file itself); a missing or invalid file is a `UserError`."""
        path = Path(root)
        if path.is_dir():
            path = path / MANIFEST_FILE
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise UserError(f"{path} does not exist; this output was not written by an embodia stage "
                            "(or its stage did not finish)") from None
        except ValueError as error:
            raise UserError(f"{path} is not a valid embodia manifest ({str(error).splitlines()[0]})") from None


def hash_file(path: str | Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: str | Path, exclude: tuple[str, ...] = (MANIFEST_FILE,)) -> list[FileEntry]:
    """Every regular file under `root` (sorted, POSIX relative paths) with sha256 and size; `exclude` are
    path prefixes relative to root (a directory name excludes its subtree)."""
    root = Path(root)
    if root.is_file():
        return [FileEntry(path=root.name, sha256=hash_file(root), size=root.stat().st_size)]
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if any(relative == prefix or relative.startswith(prefix.rstrip("/") + "/") for prefix in exclude):
            continue
        entries.append(FileEntry(path=relative, sha256=hash_file(path), size=path.stat().st_size))
    return entries


def tree_digest(entries: list[FileEntry]) -> str:
    """One sha256 over (path, file sha256) pairs: equal for equal trees whatever their mtimes."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        digest.update(entry.path.encode() + b"\0" + entry.sha256.encode() + b"\n")
    return digest.hexdigest()


def hash_tree(root: str | Path, exclude: tuple[str, ...] = (MANIFEST_FILE,)) -> str:
    """Content hash of a file or directory tree (manifest excluded)."""
    return tree_digest(list_files(root, exclude))


def input_entry(name: str, path: str | Path, kind: str = "") -> InputEntry:
    """An input reference with its content hash; an input that is itself a stage output uses its manifest's hash."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input {name!r}: {path} does not exist")
    manifest = path / MANIFEST_FILE if path.is_dir() else None
    if manifest is not None and manifest.is_file():
        try:
            sha = json.loads(manifest.read_text())["content_sha256"]
        except (ValueError, KeyError):
            sha = hash_tree(path)
    else:
        sha = hash_tree(path)
    return InputEntry(name=name, path=str(path), sha256=sha, kind=kind)


def package_versions() -> dict[str, str]:
    """embodia, Python and the installed versions of the key packages (without importing them)."""
    versions = {"python": platform.python_version()}
    for name in ("embodia", *KEY_PACKAGES):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout embodia runs from (with `+dirty` for local changes), or None if not a checkout."""
    source = Path(__file__).resolve().parents[2]
    if not (source / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def now_utc() -> str:
    """ISO-8601 UTC timestamp with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def runtime_fields() -> dict[str, Any]:
    """versions, git commit, host and user: the manifest fields that describe where a stage ran."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"versions": package_versions(), "git_commit": git_commit(), "host": socket.gethostname(), "user": user}
