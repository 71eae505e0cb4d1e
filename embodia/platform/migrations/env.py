"""Alembic environment for the platform schema; run by `embodia.platform.store.upgrade`, never from a CLI ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from embodia.platform.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    """Migrate over the connection the caller passed in `config.attributes`, or one made from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        _migrate(connection)
    engine.dispose()


def _migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
