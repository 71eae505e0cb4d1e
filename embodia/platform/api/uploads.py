"""Uploaded archives (tar, tar.gz or zip) unpacked safely: regular files and folders only (no links, devices,
absolute paths or `..`), bounded in file count and unpacked size; then a dataset is checked before registering."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from embodia.core.errors import UserError

MAX_FILES = 20_000
MAX_UNPACKED = 4 << 30


def _safe_name(name: str) -> PurePosixPath:
    """An archive member's relative path, refused when absolute or climbing out with `..`."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or not path.parts or any(part in ("..", "") for part in path.parts) or ":" in path.parts[0]:
        raise UserError(f"archive member {name!r} is not a plain relative path; refusing the upload")
    return path


class _Budget:
    """Counts files and bytes unpacked so far; refuses the upload past the limits."""

    def __init__(self, max_files: int, max_bytes: int):
        self.files, self.bytes, self.max_files, self.max_bytes = 0, 0, max_files, max_bytes

    def take(self, size: int) -> None:
        self.files, self.bytes = self.files + 1, self.bytes + max(0, size)
        if self.files > self.max_files or self.bytes > self.max_bytes:
            raise UserError(f"archive unpacks to more than {self.max_files} files or {self.max_bytes} bytes")


def _write(dest: Path, name: PurePosixPath, source, size: int, budget: _Budget) -> None:
    budget.take(size)
    target = dest.joinpath(*name.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "xb") as out:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > size:
                raise UserError(f"archive member {name} is larger than it declares")
            out.write(chunk)


def _extract_tar(data: bytes, dest: Path, budget: _Budget) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for member in archive:
            name = _safe_name(member.name)
            if member.isdir():
                dest.joinpath(*name.parts).mkdir(parents=True, exist_ok=True)
            elif member.isreg():
                _write(dest, name, archive.extractfile(member), member.size, budget)
            else:
                raise UserError(f"archive member {member.name!r} is a link or special file; only files and folders")


def _extract_zip(data: bytes, dest: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name = _safe_name(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no file type
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UserError(f"archive member {info.filename!r} is a link or special file; only files and folders")
            if info.is_dir():
                dest.joinpath(*name.parts).mkdir(parents=True, exist_ok=True)
            else:
                with archive.open(info) as source:
                    _write(dest, name, source, info.file_size, budget)


def extract_archive(data: bytes, dest: Path, *, max_files: int = MAX_FILES, max_bytes: int = MAX_UNPACKED) -> Path:
    """Unpack a tar/tar.gz/zip into the empty folder `dest`; returns the content root (its single top folder, if
    it has one)."""
    budget = _Budget(max_files, max_bytes)
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            _extract_zip(data, dest, budget)
        else:
            _extract_tar(data, dest, budget)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise UserError(f"the upload is not a readable tar or zip archive ({error})") from None
    entries = list(dest.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest
