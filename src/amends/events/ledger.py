"""The event ledger: stores each event once per (source, id), and the customers it names.

Append-only. A repeat of a stored event is counted as a duplicate and changes nothing, so any write
here can be retried. Callers own the transaction.

This is the hot path of ingestion: rows are serialised here once, per dialect, and inserted through a
plain table clause so that SQLAlchemy does no per-value type processing (see bench/ingest.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from psycopg.types.json import Jsonb

from amends.events.envelope import Event
from amends.store import UnitOfWork

__all__ = ["Appended", "append_events"]

_EVENT_COLUMNS = ("source", "event_id", "type", "time", "subject", "data", "attributes", "received_at")
_events = sa.table("events", *(sa.column(name) for name in _EVENT_COLUMNS))
_customers = sa.table("customers", sa.column("id"), sa.column("created_at"))


@dataclass(frozen=True, slots=True)
class Appended:
    """What happened to a group of valid events: stored for the first time, or already known."""

    accepted: int = 0
    duplicates: int = 0

    def __add__(self, other: Appended) -> Appended:
        return Appended(self.accepted + other.accepted, self.duplicates + other.duplicates)


def append_events(uow: UnitOfWork, events: Sequence[Event], *, received_at: datetime) -> Appended:
    """Store the events not yet in the ledger, creating customers on first sight of their subject."""
    if not events:
        return Appended()
    instant = _sqlite_instant if uow.dialect == "sqlite" else _aware
    document = _json_text if uow.dialect == "sqlite" else _jsonb
    received = instant(received_at)
    subjects = sorted({event.subject for event in events})  # sorted: the same lock order in every writer
    uow.insert_missing(_customers, [{"id": s, "created_at": received} for s in subjects])
    rows = [
        {
            "source": event.source,
            "event_id": event.id,
            "type": event.type,
            "time": instant(event.time),
            "subject": event.subject,
            "data": document(event.data),
            "attributes": None if event.attributes is None else document(event.attributes),
            "received_at": received,
        }
        for event in events
    ]
    accepted = uow.insert_missing(_events, rows)
    return Appended(accepted=accepted, duplicates=len(rows) - accepted)


def _sqlite_instant(value: datetime) -> str | datetime:
    # The text form SQLAlchemy's SQLite DateTime reads back: UTC wall time, always with microseconds.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")


def _aware(value: datetime) -> str | datetime:
    return value


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=_json_text)
