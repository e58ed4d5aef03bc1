"""The event ledger: stores each event once per (source, id), and the customers it names.

Append-only. A repeat of a stored event is counted as a duplicate and changes nothing, so any write
here can be retried. Callers own the transaction.

This is the hot path of ingestion: rows are serialised here once, per dialect, into the driver's own
form, and handed to the store's bulk insert, so that nothing is processed twice (see bench/ingest.py).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg.types.json import Jsonb

from amends.events.envelope import Event
from amends.store import UnitOfWork

__all__ = ["Appended", "LedgerRows", "append_events", "append_rows", "dedup_key", "ledger_rows"]

_EVENT_COLUMNS = (
    "dedup_key",
    "source",
    "event_id",
    "type",
    "time",
    "subject",
    "data",
    "attributes",
    "received_at",
)
_CUSTOMER_COLUMNS = ("id", "created_at")


@dataclass(frozen=True, slots=True)
class Appended:
    """What happened to a group of valid events: stored for the first time, or already known."""

    accepted: int = 0
    duplicates: int = 0

    def __add__(self, other: Appended) -> Appended:
        return Appended(self.accepted + other.accepted, self.duplicates + other.duplicates)


def dedup_key(source: str, event_id: str) -> str:
    """The key an event is stored once under: a 128-bit BLAKE2b digest of its (source, id), as 22
    characters of URL-safe base64.

    The pair is encoded as a JSON array, so no two pairs share an encoding. Never change this: stored
    rows carry it (migration 0002 computes it the same way).
    """
    digest = hashlib.blake2b(orjson.dumps([source, event_id]), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest)[:22].decode()


@dataclass(frozen=True, slots=True)
class LedgerRows:
    """Events serialised for one database dialect: the customers they name and the event rows."""

    customers: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]


def ledger_rows(events: Sequence[Event], *, dialect: str, received_at: datetime) -> LedgerRows:
    """Serialise events for `dialect`; pure, so it can run apart from the transaction that stores them."""
    sqlite = dialect == "sqlite"
    instant = _sqlite_instant if sqlite else _aware
    document = _json_text if sqlite else _jsonb
    received = instant(received_at)
    subjects = sorted({event.subject for event in events})  # sorted: the same lock order in every writer
    return LedgerRows(
        customers=[(subject, received) for subject in subjects],
        events=[
            (
                dedup_key(event.source, event.id),
                event.source,
                event.id,
                event.type,
                instant(event.time),
                event.subject,
                document(event.data),
                None if event.attributes is None else document(event.attributes),
                received,
            )
            for event in events
        ],
    )


def append_rows(uow: UnitOfWork, rows: LedgerRows) -> Appended:
    """Store serialised events not yet in the ledger, creating customers on first sight."""
    uow.insert_missing("customers", _CUSTOMER_COLUMNS, rows.customers)
    accepted = uow.insert_missing("events", _EVENT_COLUMNS, rows.events)
    return Appended(accepted=accepted, duplicates=len(rows.events) - accepted)


def append_events(uow: UnitOfWork, events: Sequence[Event], *, received_at: datetime) -> Appended:
    """Store the events not yet in the ledger, creating customers on first sight of their subject."""
    if not events:
        return Appended()
    return append_rows(uow, ledger_rows(events, dialect=uow.dialect, received_at=received_at))


def _sqlite_instant(value: datetime) -> str | datetime:
    # The text form SQLAlchemy's SQLite DateTime reads back: UTC wall time, always with microseconds.
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def _aware(value: datetime) -> str | datetime:
    return value


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=_json_text)
