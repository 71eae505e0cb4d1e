"""Content-addressed artifact storage: a file or directory tree is kept once, under the sha256 of its content.

Public API:
    ArtifactStore (Protocol): put(source, *, digest=None, move=False) -> str; exists(sha) -> bool;
        path(sha) -> Path (must exist); locate(sha) -> Path (no check); open(sha, relpath=None) -> BinaryIO;
        delete(sha) -> bool; list() -> list[str]
    LocalArtifactStore(root): objects at `root/sha256/<2 hex>/<sha>/` (a directory tree as is; a single file as
        a directory holding that one file, since its name is part of its content hash).
The hash is `embodia.core.manifest.hash_tree` (manifest.json excluded), so it equals a stage output's
`content_sha256`. Objects arrive whole through a rename (never half-written) and equal content is stored once.
An S3-compatible store can implement the same protocol later.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from embodia.core.errors import UserError
from embodia.core.manifest import hash_tree

_HEX = set("0123456789abcdef")


@runtime_checkable
class ArtifactStore(Protocol):
    """Where artifact contents live, addressed by their sha256."""

    def put(self, source: str | Path, *, digest: str | None = None, move: bool = False) -> str:
        """Store a file or directory tree; returns its sha256 (equal content is stored once)."""

    def exists(self, sha256: str) -> bool:
        """True when content with this hash is stored."""

    def path(self, sha256: str) -> Path:
        """A local directory holding the content (an error if absent)."""

    def locate(self, sha256: str) -> Path:
        """Where the content is or would be kept (no check that it is there)."""

    def open(self, sha256: str, relpath: str | None = None) -> BinaryIO:
        """Open one file of the content for reading (the only file when `relpath` is None)."""

    def delete(self, sha256: str) -> bool:
        """Remove the content; False when it was not there."""

    def list(self) -> list[str]:
        """Every stored hash."""


def check_sha256(sha256: str) -> str:
    """`sha256` if it is 64 lowercase hex digits, else a `UserError`."""
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise UserError(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
    return sha256


class LocalArtifactStore:
    """Artifacts as directories on the local filesystem under `root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _object_dir(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, source: str | Path, *, digest: str | None = None, move: bool = False) -> str:
        """Store `source` under its content hash (`digest` when the caller already verified it); `move=True`
        renames the source in (same filesystem) instead of copying it."""
        source = Path(source)
        if not source.exists():
            raise UserError(f"cannot store {source}: it does not exist")
        sha256 = check_sha256(digest) if digest else hash_tree(source)
        target = self._object_dir(sha256)
        if target.is_dir():
            if move:
                _remove(source)
            return sha256
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{sha256}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            _stage(source, staging, move)
            os.rename(staging, target)  # atomic; fails if another writer stored the same content first
        except OSError:
            if not target.is_dir():
                raise
        finally:
            if staging.exists():
                _remove(staging)
        return sha256

    def exists(self, sha256: str) -> bool:
        """True when the content is stored."""
        return self._object_dir(sha256).is_dir()

    def locate(self, sha256: str) -> Path:
        """Where the content is or would be kept."""
        return self._object_dir(sha256)

    def path(self, sha256: str) -> Path:
        """The directory holding the content."""
        target = self._object_dir(sha256)
        if not target.is_dir():
            raise UserError(f"artifact sha256:{sha256} is not in the store at {self.root}")
        return target

    def open(self, sha256: str, relpath: str | None = None) -> BinaryIO:
        """Open a file of the content; `relpath` may be omitted for a single-file artifact."""
        root = self.path(sha256)
        if relpath is None:
            files = [p for p in root.rglob("*") if p.is_file()]
            if len(files) != 1:
                raise UserError(f"artifact sha256:{sha256} holds {len(files)} files; name one (relpath)")
            return open(files[0], "rb")
        target = (root / relpath).resolve()
        if root.resolve() not in target.parents or not target.is_file():
            raise UserError(f"artifact sha256:{sha256} has no file {relpath!r}")
        return open(target, "rb")

    def delete(self, sha256: str) -> bool:
        """Remove the content (renamed aside first, so readers never see half a tree)."""
        target = self._object_dir(sha256)
        if not target.is_dir():
            return False
        doomed = target.parent / f".{sha256}.del-{uuid.uuid4().hex[:8]}"
        os.rename(target, doomed)
        shutil.rmtree(doomed)
        return True

    def list(self) -> list[str]:
        """Every stored hash, sorted."""
        base = self.root / "sha256"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.glob("??/*") if p.is_dir() and not p.name.startswith("."))


def _stage(source: Path, staging: Path, move: bool) -> None:
    """Put `source` at `staging` (a directory): renamed when `move`, copied otherwise."""
    if source.is_dir():
        if move:
            try:
                os.rename(source, staging)
                return
            except OSError:
                pass  # another filesystem: copy, then remove
        shutil.copytree(source, staging)
    else:
        staging.mkdir()
        if move:
            try:
                os.rename(source, staging / source.name)
                return
            except OSError:
                pass
        shutil.copy2(source, staging / source.name)
    if move:
        _remove(source)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
