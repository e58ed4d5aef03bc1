"""Storage: the database engine, the tables, migrations and the unit of work.

Knows no stage's types. The function that opens `with db.unit_of_work() as uow` is the only code that
commits; everything it calls takes the unit of work and never opens a connection of its own.
"""

from amends.store import tables
from amends.store.bulk import BulkValues, bulk_values
from amends.store.database import Database, UnitOfWork
from amends.store.migrate import head_revision, pending_revisions, upgrade

__all__ = [
    "BulkValues",
    "Database",
    "UnitOfWork",
    "bulk_values",
    "head_revision",
    "pending_revisions",
    "tables",
    "upgrade",
]
