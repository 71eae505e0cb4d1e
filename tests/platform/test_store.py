"""Workspace store: migrations from empty and from the previous revision, backend settings, defaults."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from embodia.core.errors import ConfigError
from embodia.platform.store import HEAD_REVISION, current_revision, database_url, make_engine, open_store, upgrade

QUEUE_TABLES = {"jobs", "job_attempts", "projects"}
REGISTRY_TABLES = {"artifacts", "lineage_edges", "model_versions", "model_aliases", "alias_events", "deployments"}


def test_migrations_build_the_schema_from_an_empty_database(db_url):
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == HEAD_REVISION
    assert REGISTRY_TABLES | QUEUE_TABLES <= set(inspect(engine).get_table_names())
    upgrade(engine)  # idempotent at head
    assert current_revision(engine) == HEAD_REVISION
    engine.dispose()


def test_upgrade_from_the_previous_revision_keeps_the_data(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    assert not QUEUE_TABLES & set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO artifacts (sha256, kind, stage, size, manifest, tags, created_at) "
                          "VALUES (:sha, 'dataset', 'generate', 3, '{}', '[]', CURRENT_TIMESTAMP)"), {"sha": "a" * 64})
    upgrade(engine)
    assert current_revision(engine) == HEAD_REVISION
    with engine.begin() as conn:
        assert conn.execute(text("SELECT kind FROM artifacts")).scalar() == "dataset"
        conn.execute(text("INSERT INTO projects (name) VALUES ('p')"))
        assert conn.execute(text("SELECT count(*) FROM projects")).scalar() == 1
        assert conn.execute(text("SELECT jurisdiction FROM artifacts")).scalar() is None
    assert {"region", "placement"} <= {c["name"] for c in inspect(engine).get_columns("jobs")}
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    store = open_store(tmp_path / "ws", f"sqlite:///{tmp_path / 'x.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    store.close()


def test_workspace_defaults_to_dot_embodia_under_the_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("EMBODIA_HOME", raising=False)
    monkeypatch.delenv("EMBODIA_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    store = open_store()
    assert store.home == (tmp_path / ".embodia").resolve()
    assert store.dialect == "sqlite" and (tmp_path / ".embodia" / "embodia.db").is_file()
    store.close()


def test_database_url_follows_the_environment_and_rejects_other_databases(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBODIA_DB_URL", "postgresql://u@h:5/db")
    assert database_url(tmp_path) == "postgresql+psycopg://u@h:5/db"
    with pytest.raises(ConfigError, match="EMBODIA_DB_URL"):
        database_url(tmp_path, "mysql://x/y")


def test_opening_without_migrating_an_old_database_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    with pytest.raises(ConfigError, match="revision 0001"):
        open_store(tmp_path / "ws", url, migrate=False)


def test_the_migrated_schema_matches_the_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from embodia.platform.models import Base

    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert differences == [], "a model changed without a migration (add a revision under platform/migrations)"


def test_a_read_session_takes_no_write_lock_while_a_writer_holds_it(tmp_path):
    store = open_store(tmp_path / "ws")
    try:
        with store.session() as writer:  # BEGIN IMMEDIATE: holds SQLite's write lock until the block ends
            writer.execute(text("INSERT INTO projects (name) VALUES ('held')"))
            with store.read_session() as reader:  # would wait the 30 s busy timeout if it asked for the lock
                names = reader.execute(text("SELECT name FROM projects")).scalars().all()
            assert "held" not in names  # the reader sees the last committed snapshot
        with store.read_session() as reader:
            assert "held" in reader.execute(text("SELECT name FROM projects")).scalars().all()
    finally:
        store.close()
