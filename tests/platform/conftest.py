"""Platform fixtures: every store test runs on SQLite and on a throwaway PostgreSQL cluster.

The cluster is made once per session with Debian's `initdb` + `pg_ctl` (package `postgresql`, installed by
`make system-deps`) on a temporary directory and a free port, as the unprivileged `nobody` when run as root,
and stopped at the end. Each test gets its own fresh database in it.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from embodia.platform.pgcluster import PostgresCluster, PostgresMissing, throwaway_postgres
from embodia.platform.store import DB_URL_ENV, HOME_ENV, Store, open_store


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the whole session; a loud failure (never a skip) when PostgreSQL is missing."""
    try:
        with throwaway_postgres() as cluster:
            yield cluster
    except (PostgresMissing, RuntimeError) as error:
        pytest.fail(f"the platform tests need a PostgreSQL server: {error}")


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
