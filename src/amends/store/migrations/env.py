"""Alembic environment: runs amends' migrations on the engine amends hands over (see store/migrate.py)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from amends.store.tables import metadata

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no database: pass an engine or set sqlalchemy.url")
        engine = sa.create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            # SQLite can only ALTER a table by copying it; batch mode does that for us.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise RuntimeError("amends runs its migrations online only (amends init)")
run_migrations_online()
