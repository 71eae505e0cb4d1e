"""A throwaway PostgreSQL cluster (`initdb` + `pg_ctl` on a temporary directory and a free port), for the
platform's tests and benchmarks and for trying the PostgreSQL store on one machine.

Public API:
    postgres_bindir() -> Path            Debian's server binaries (/usr/lib/postgresql/<version>/bin), newest first
    PostgresCluster(root).start() / .stop() / .url(database) / .new_database() -> URL
    throwaway_postgres() -> context manager yielding a started PostgresCluster, removed afterwards
Run as root, the server runs as the unprivileged `nobody` (PostgreSQL refuses root). Durability is switched off
(fsync, synchronous_commit, full_page_writes): the data is thrown away.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

UNPRIVILEGED_UID = 65534  # nobody
_DATABASES = itertools.count()


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def postgres_bindir() -> Path:
    """The directory of the newest installed PostgreSQL server binaries."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found is None:
        raise PostgresMissing("PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb "
                              "on PATH): run `make system-deps` (Debian package `postgresql`)")
    return Path(found).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_unprivileged(command: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


class PostgresCluster:
    """A cluster in `root` listening on 127.0.0.1 at a free port, superuser `embodia`, trust authentication."""

    def __init__(self, root: str | Path, bindir: Path | None = None) -> None:
        self.root, self.bindir, self.port = Path(root), bindir or postgres_bindir(), _free_port()
        self.data = self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(_as_unprivileged(list(args)), capture_output=True, text=True, cwd=self.root)

    def start(self) -> "PostgresCluster":
        """initdb and start the server; raises RuntimeError with the server's log on failure."""
        if os.geteuid() == 0:
            os.chown(self.root, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        init = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "embodia", "-A", "trust",
                         "-E", "UTF8", "--no-sync")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        log = self.root / "server.log"
        started = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(log),
                            "-w", "-t", "60", "start")
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{log.read_text() if log.exists() else ''}")
        return self

    def stop(self) -> None:
        """Stop the server at once (the data is disposable)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of a database in this cluster."""
        return f"postgresql+psycopg://embodia@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create a fresh, empty database; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(_DATABASES)}"
        with psycopg.connect(f"postgresql://embodia@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PostgresCluster]:
    """A started cluster in a temporary directory, stopped and deleted when the block ends."""
    root = Path(tempfile.mkdtemp(prefix="embodia-pg-"))
    cluster = PostgresCluster(root)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
