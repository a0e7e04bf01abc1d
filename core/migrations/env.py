"""Alembic environment: the URL comes from the caller (`core.db.migrate`), never from a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

import core.tables  # noqa: F401  (registers every table on Base.metadata)
from core.db import Base

config = context.config


def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
