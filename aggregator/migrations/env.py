"""Alembic environment: runs on the connection the store hands over (async engines included).

The store calls `command.upgrade` inside `AsyncConnection.run_sync`, passing the sync connection
in `config.attributes["connection"]` (Alembic cookbook, "Programmatic API use with asyncio").
"""

from __future__ import annotations

from alembic import context

from aggregator.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through aggregator.store.migrate(), not the alembic CLI")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
