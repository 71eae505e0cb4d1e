"""The platform's workspace: one database (SQLite by default, PostgreSQL at scale) and one artifact store.

Public API (used by pipelines, deployments, the queue and the CLI):
    open_store(home=None, db_url=None, *, migrate=True) -> Store
        home: workspace directory (default `$EMBODIA_HOME`, else `./.embodia`);
        db_url: SQLAlchemy URL (default `$EMBODIA_DB_URL`, else SQLite `<home>/embodia.db`).
    Store.home, .url, .engine, .artifacts (an ArtifactStore), .dialect ('sqlite' | 'postgresql')
    Store.session() -> context manager yielding an ORM Session, committed on success, rolled back on error
    Store.read_session() -> the same for reads only: on SQLite a plain (deferred) BEGIN, so concurrent readers
        see a WAL snapshot without taking the write lock (what the API's list/status routes use)
    Store.path(*parts) -> Path under the workspace (logs, job outputs)
    Store.close()
    upgrade(url_or_engine, revision="head") / current_revision(engine) / HEAD_REVISION
The schema is made only by the Alembic migrations in `embodia/platform/migrations` (no alembic.ini needed).
SQLite runs in WAL mode with a busy timeout, and every `session()` starts `BEGIN IMMEDIATE`, so two processes
never both read-then-write the same rows (what the job queue's claim relies on).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from embodia.core.errors import ConfigError
from embodia.platform.artifacts import ArtifactStore, LocalArtifactStore

HOME_ENV = "EMBODIA_HOME"
DB_URL_ENV = "EMBODIA_DB_URL"
DEFAULT_HOME = ".embodia"
HEAD_REVISION = "0005"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE, SQLITE_MAX_OVERFLOW = 8, 32  # an API server's thread pool (40) reads in parallel
READ_ONLY_OPTION = "embodia_read_only"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def workspace_home(home: str | Path | None = None) -> Path:
    """The workspace directory: `home`, else `$EMBODIA_HOME`, else `.embodia/` under the current directory."""
    chosen = home if home is not None else os.environ.get(HOME_ENV) or Path.cwd() / DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


def database_url(home: Path, db_url: str | None = None) -> str:
    """The database URL: `db_url`, else `$EMBODIA_DB_URL`, else SQLite in the workspace."""
    url = db_url or os.environ.get(DB_URL_ENV) or f"sqlite:///{home / 'embodia.db'}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not the psycopg2 default
    if not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise ConfigError(f"{DB_URL_ENV}={url!r}: only sqlite:/// and postgresql:// URLs are supported")
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, foreign keys and `BEGIN IMMEDIATE` transactions."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                           pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_MAX_OVERFLOW)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (pysqlite's own would be deferred)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Migrate the database at `target` (URL or engine) up to `revision` with the shipped Alembic scripts."""
    from alembic import command

    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # two workers starting at once migrate one after the other
                connection.execute(text("SELECT pg_advisory_xact_lock(7412001)"))
            config = _alembic_config(engine.url.render_as_string(hide_password=False))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    if "alembic_version" not in inspect(engine).get_table_names():
        return None
    with engine.connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@dataclass
class Store:
    """An open workspace: database engine, session factory and the artifact store under `home`."""

    home: Path
    url: str
    engine: Engine
    artifacts: ArtifactStore

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.engine.execution_options(**{READ_ONLY_OPTION: True}),
                                           expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises."""
        with self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read_session(self) -> Iterator[Session]:
        """A unit of work that only reads: on SQLite it takes no write lock, so readers never queue behind each
        other or behind a writer (WAL gives each a consistent snapshot). Writing in it is a bug."""
        with self._read_sessions() as session, session.begin():
            yield session

    def path(self, *parts: str) -> Path:
        """A path under the workspace directory."""
        return self.home.joinpath(*parts)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def open_store(home: str | Path | None = None, db_url: str | None = None, *, migrate: bool = True) -> Store:
    """Open (and by default create or migrate) the workspace at `home` with its database."""
    home_path = workspace_home(home)
    home_path.mkdir(parents=True, exist_ok=True)
    url = database_url(home_path, db_url)
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    elif current_revision(engine) != HEAD_REVISION:
        raise ConfigError(f"the database at {engine.url.render_as_string()} is at revision "
                          f"{current_revision(engine)}, not {HEAD_REVISION}; open it with migrate=True to upgrade")
    return Store(home=home_path, url=url, engine=engine, artifacts=LocalArtifactStore(home_path / "artifacts"))
