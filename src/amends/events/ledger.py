"""The event ledger: stores each event once per (source, id), and the customers it names.

Append-only. A repeat of a stored event is counted as a duplicate and changes nothing, so any write
here can be retried. Callers own the transaction.

This is the hot path of ingestion: rows are serialised here once, per dialect, into the driver's own
form, and handed to the store's bulk insert, so that nothing is processed twice (see bench/ingest.py).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
import sqlalchemy as sa

from amends.events.envelope import Event
from amends.store import UnitOfWork, bulk_values, tables

__all__ = [
    "Appended",
    "LedgerRows",
    "LedgerWatcher",
    "Recorded",
    "append_events",
    "append_rows",
    "dedup_key",
    "last_seq",
    "ledger_rows",
    "read_recorded",
]

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
class Recorded:
    """An event as the ledger holds it: its place in the order of arrival and its key (see `dedup_key`)."""

    seq: int
    key: str
    event: Event


class LedgerWatcher(Protocol):
    """Something that must see every event the ledger stores, in the transaction that stores it (detection).

    `before_append` runs first in the transaction, before any event is written (to take a lock, so that
    watchers see events in the order of `seq`); `appended` gets the events stored for the first time,
    in `seq` order, and may write in the same transaction.
    """

    def before_append(self, uow: UnitOfWork) -> None: ...

    def appended(self, uow: UnitOfWork, recorded: Sequence[Recorded]) -> None: ...


@dataclass(frozen=True, slots=True)
class LedgerRows:
    """Events serialised for one database dialect: the customers they name and the event rows (the
    events themselves beside them, in the same order)."""

    customers: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    sources: Sequence[Event] = field(default=())


def ledger_rows(events: Sequence[Event], *, dialect: str, received_at: datetime) -> LedgerRows:
    """Serialise events for `dialect`; pure, so it can run apart from the transaction that stores them."""
    values = bulk_values(dialect)
    instant, document = values.instant, values.document
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
        sources=events,
    )


def append_rows(uow: UnitOfWork, rows: LedgerRows, watcher: LedgerWatcher | None = None) -> Appended:
    """Store serialised events not yet in the ledger, creating customers on first sight. A `watcher` is
    shown the events stored for the first time, in this transaction."""
    if watcher is None:
        uow.insert_missing("customers", _CUSTOMER_COLUMNS, rows.customers)
        accepted = uow.insert_missing("events", _EVENT_COLUMNS, rows.events)
        return Appended(accepted=accepted, duplicates=len(rows.events) - accepted)
    watcher.before_append(uow)
    uow.insert_missing("customers", _CUSTOMER_COLUMNS, rows.customers)
    inserted = uow.insert_new("events", _EVENT_COLUMNS, rows.events, returning=("seq", "dedup_key"))
    if inserted:
        by_key: dict[str, Event] = {}
        for row, event in zip(rows.events, rows.sources, strict=True):
            by_key.setdefault(row[0], event)  # a repeat within the batch: the first one was stored
        inserted.sort()
        watcher.appended(uow, [Recorded(seq, key, by_key[key]) for seq, key in inserted])
    else:
        watcher.appended(uow, [])
    return Appended(accepted=len(inserted), duplicates=len(rows.events) - len(inserted))


def append_events(
    uow: UnitOfWork, events: Sequence[Event], *, received_at: datetime, watcher: LedgerWatcher | None = None
) -> Appended:
    """Store the events not yet in the ledger, creating customers on first sight of their subject."""
    if not events:
        return Appended()
    return append_rows(uow, ledger_rows(events, dialect=uow.dialect, received_at=received_at), watcher)


def last_seq(uow: UnitOfWork) -> int:
    """The ledger's newest `seq` (0 when it is empty)."""
    return int(uow.execute(sa.select(sa.func.coalesce(sa.func.max(tables.events.c.seq), 0))).scalar_one())


def read_recorded(
    uow: UnitOfWork,
    *,
    after: int,
    through: int | None = None,
    not_before: datetime | None = None,
    types: Collection[str] | None = None,
    limit: int = 10_000,
) -> list[Recorded]:
    """Stored events with `after < seq <= through`, in `seq` order, at most `limit`; with `not_before`,
    only those whose time is at or after it; with `types`, only those of these types."""
    events = tables.events
    query = (
        sa.select(
            events.c.seq,
            events.c.dedup_key,
            events.c.source,
            events.c.event_id,
            events.c.type,
            events.c.time,
            events.c.subject,
            events.c.data,
            events.c.attributes,
        )
        .where(events.c.seq > after)
        .order_by(events.c.seq)
        .limit(limit)
    )
    if through is not None:
        query = query.where(events.c.seq <= through)
    if not_before is not None:
        query = query.where(events.c.time >= not_before)
    if types is not None:
        query = query.where(events.c.type.in_(list(types)))
    return [
        Recorded(
            row.seq,
            row.dedup_key,
            Event(row.event_id, row.source, row.type, row.time, row.subject, row.data, row.attributes),
        )
        for row in uow.execute(query)
    ]
