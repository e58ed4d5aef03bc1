"""The recovery lock: case intake, complaints and grants take it first, so that two processes never open two
cases for one customer or pass an authority limit or a budget together.

PostgreSQL: a transaction-scoped advisory lock. SQLite: the database's one write lock, taken by a write that
changes nothing, before the transaction reads anything (so its snapshot is the newest).
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from amends.store import UnitOfWork, tables

__all__ = ["recovery_lock"]

_KEY = int.from_bytes(hashlib.blake2b(b"amends.recover", digest_size=8).digest()) - (1 << 63)


def recovery_lock(uow: UnitOfWork) -> None:
    """Hold the recovery lock until this unit of work ends."""
    if uow.dialect == "postgresql":
        uow.execute(sa.select(sa.func.pg_advisory_xact_lock(_KEY)))
    else:
        cursors = tables.recover_cursors
        uow.execute(cursors.update().where(cursors.c.name == "").values(name=cursors.c.name))
