"""The database schema: every table amends keeps, in one MetaData.

The store knows no stage's types; each stage reads and writes its own tables with Core expressions.
Every retried write has a key backed by a unique constraint (events on source and id). Changing a table
here needs a migration in store/migrations/versions (see docs/operations.md).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Index,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from amends.store.types import JSONDocument, SerialKey, UTCDateTime

__all__ = ["api_keys", "customers", "events", "metadata"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# A customer is created the first time an event names them as its subject; the id is the company's own.
customers = Table(
    "customers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# The event ledger: append-only, one row per (source, event_id); `seq` is the order of arrival.
# Uniqueness is kept on `dedup_key`, a 128-bit BLAKE2b digest of (source, event_id) in 22 characters
# of URL-safe base64 (see events/ledger.py): it indexes faster and smaller than the two strings.
# `subject` has no foreign key: the ledger creates the customer in the same transaction as the event,
# and a key check per inserted row was the ledger's largest single cost.
events = Table(
    "events",
    metadata,
    Column("seq", SerialKey, primary_key=True, autoincrement=True),
    Column("dedup_key", String(22), nullable=False),
    Column("source", String(500), nullable=False),
    Column("event_id", String(500), nullable=False),
    Column("type", String(200), nullable=False),
    Column("time", UTCDateTime(), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("data", JSONDocument, nullable=False),
    # Optional CloudEvents attributes and extensions, kept as sent; NULL when there are none.
    Column("attributes", JSONDocument, nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("dedup_key"),
    Index(None, "subject", "time", "seq"),
)

# API keys for integrations: only a SHA-256 of the secret part is kept; `id` is the public prefix.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("scopes", JSONDocument, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)
# A name is unique among the keys still in use, so a revoked key's name can be given to its successor.
Index(
    "uq_api_keys_active_name",
    api_keys.c.name,
    unique=True,
    sqlite_where=api_keys.c.revoked_at.is_(None),
    postgresql_where=api_keys.c.revoked_at.is_(None),
)
