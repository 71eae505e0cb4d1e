"""Platform fixtures: every store test runs on SQLite and on a throwaway PostgreSQL cluster.

The cluster is made once per session with Debian's `initdb` + `pg_ctl` (package `postgresql`, installed by
`make system-deps`) on a temporary directory and a free port, as the unprivileged `nobody` when run as root,
and stopped at the end. Each test gets its own fresh database in it.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from embodia.platform.store import DB_URL_ENV, HOME_ENV, Store, open_store

_DATABASES = itertools.count()


def _postgres_bin() -> Path:
    """The directory of Debian's PostgreSQL server binaries; a loud failure when the package is missing."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        found = shutil.which("initdb")
        if found is None:
            pytest.fail("PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on "
                        "PATH): run `make system-deps` (Debian package `postgresql`); the platform tests need them")
        return Path(found).resolve().parent
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_unprivileged(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as `nobody` then."""
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


class PostgresCluster:
    """A running throwaway cluster; `new_database()` gives a fresh database URL."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir, self.root, self.port = bindir, root, _free_port()
        self.data = root / "data"

    def start(self) -> None:
        if os.geteuid() == 0:
            os.chown(self.root, 65534, 65534)
        subprocess.run(_as_unprivileged([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "embodia",
                                         "-A", "trust", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True, cwd=self.root)
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        result = subprocess.run(_as_unprivileged([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                                                  "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"]),
                                capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            pytest.fail(f"pg_ctl start failed: {result.stderr}\n{log}")

    def stop(self) -> None:
        subprocess.run(_as_unprivileged([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                         "-w", "stop"]), capture_output=True, cwd=self.root)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://embodia@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(_DATABASES)}"
        with psycopg.connect(f"postgresql://embodia@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the whole session."""
    root = Path(tempfile.mkdtemp(prefix="embodia-pg-"))
    cluster = PostgresCluster(_postgres_bin(), root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: SQLite in the test's directory, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'embodia.db'}"
    return request.getfixturevalue("postgres_cluster").new_database()


@pytest.fixture
def store(db_url, tmp_path, monkeypatch) -> Iterator[Store]:
    """An open, migrated workspace on each backend."""
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "ws"))
    opened = open_store(tmp_path / "ws", db_url)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path, monkeypatch) -> Iterator[Store]:
    """An open workspace on SQLite only (for checks of worker logic that do not depend on the database)."""
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "ws"))
    opened = open_store(tmp_path / "ws", f"sqlite:///{tmp_path / 'embodia.db'}")
    yield opened
    opened.close()
