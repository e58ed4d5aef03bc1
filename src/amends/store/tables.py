"""The database schema: every table amends keeps, in one MetaData.

The store knows no stage's types; each stage reads and writes its own tables with Core expressions.
Every retried write has a key backed by a unique constraint (events on source and id). Changing a table
here needs a migration in store/migrations/versions (see docs/operations.md).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from amends.store.types import JSONDocument, SerialKey, UTCDateTime

__all__ = ["api_keys", "customers", "detect_cursors", "detect_state", "events", "incidents", "metadata"]

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

# Incidents: one detected failure for one customer, unique on (rule, correlation key) so that evaluating
# an event again, or backfilling history the streaming evaluator has seen, never makes a second one.
# `key` is text: a correlation key is whatever the rule reads from the event (an order id, a vehicle id).
incidents = Table(
    "incidents",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("rule_id", String(100), nullable=False),
    Column("key", Text, nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("severity", Integer, nullable=False),
    Column("playbook", String(100), nullable=True),
    Column("status", String(20), nullable=False),  # open | resolved_late
    Column("failure_at", UTCDateTime(), nullable=False),  # when it went wrong (event time)
    Column("detected_at", UTCDateTime(), nullable=False),  # when amends noticed (wall clock)
    Column("detected_by", String(20), nullable=False),  # stream | backfill
    Column("resolved_at", UTCDateTime(), nullable=True),  # the expected event, when it came late
    Column("facts", JSONDocument, nullable=False),
    Column("resolution", JSONDocument, nullable=True),  # the late event, by reference
    UniqueConstraint("rule_id", "key"),
    Index(None, "customer_id", "failure_at"),
    Index(None, "failure_at"),
)

# The streaming evaluator's state, one row per entry (an absence rule's expectation, a count window, a
# sequence's pending first event, a cooldown), written in the same transaction as the events that changed
# it. `due` is when the entry next needs attention: an expectation's deadline is its durable timer.
detect_state = Table(
    "detect_state",
    metadata,
    Column("kind", String(10), nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("key", Text, nullable=False),
    Column("due", UTCDateTime(), nullable=False),
    Column("payload", JSONDocument, nullable=False),
    PrimaryKeyConstraint("kind", "rule_id", "key"),
)

# Where each streaming evaluator is (one, `main`, in embedded mode): the last ledger `seq` it has taken,
# the oldest one still waiting above its watermark, the watermark itself, and a version that every
# evaluation increments, so a process can tell that another one has moved the state on.
detect_cursors = Table(
    "detect_cursors",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("low_seq", BigInteger, nullable=True),
    Column("watermark", UTCDateTime(), nullable=True),
    Column("latest", UTCDateTime(), nullable=True),
    Column("late_events", BigInteger, nullable=False),
    Column("skipped", JSONDocument, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
