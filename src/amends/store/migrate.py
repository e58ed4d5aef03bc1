"""Schema migrations: one Alembic history that serves SQLite and PostgreSQL alike.

`upgrade` is what `amends init` runs; it is safe to run again and again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from amends.store.database import Database, translate_errors

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where migrations are looked at, not at start-up: every command imports the store,
# few of them migrate, and the import is large.

__all__ = ["alembic_config", "head_revision", "known_revisions", "pending_revisions", "upgrade"]

_SCRIPTS = Path(__file__).with_name("migrations")


def alembic_config(db: Database | None = None) -> Config:
    """The Alembic configuration for amends' migrations, bound to `db` when given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if db is not None:
        config.attributes["engine"] = db.engine
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def known_revisions() -> frozenset[str]:
    """Every revision the code knows."""
    from alembic.script import ScriptDirectory

    return frozenset(rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def pending_revisions(db: Database) -> list[str]:
    """Revisions not yet applied to the database, oldest first (empty when it is up to date)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    with translate_errors(), db.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    heads = tuple(script.get_heads())
    pending = [rev.revision for rev in script.iterate_revisions(heads, current or "base") if rev is not None]
    return list(reversed(pending))


def upgrade(db: Database) -> None:
    """Create the schema, or bring it up to the newest revision."""
    from alembic import command

    db.create_sqlite_directory()
    with translate_errors():
        command.upgrade(alembic_config(db), "head")
