"""Customers as the ledger knows them: who they are, and their story as a timeline of events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from amends.errors import NotFound
from amends.events.envelope import Event
from amends.store import UnitOfWork, tables
from amends.store.paging import decode_cursor, encode_cursor

__all__ = ["Customer", "StoredEvent", "TimelinePage", "get_customer", "timeline"]

_events = tables.events
_customers = tables.customers


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer, created on first sight of their id as an event's subject."""

    id: str
    created_at: datetime
    event_count: int
    first_event_at: datetime | None
    last_event_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the ledger holds it: `seq` is its place in the order of arrival."""

    seq: int
    received_at: datetime
    event: Event


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """Events newest first; `next_cursor` fetches the older ones, None on the last page."""

    events: tuple[StoredEvent, ...]
    next_cursor: str | None


def get_customer(uow: UnitOfWork, customer_id: str) -> Customer:
    """The customer with this id, with a summary of their events; NotFound if never seen."""
    row = uow.execute(sa.select(_customers).where(_customers.c.id == customer_id)).one_or_none()
    if row is None:
        raise NotFound(f"no customer {customer_id!r}")
    # min and max keep the column's type, so SQLite's text comes back as aware datetimes too.
    summary = uow.execute(
        sa.select(
            sa.func.count().label("events"),
            sa.func.min(_events.c.time).label("first"),
            sa.func.max(_events.c.time).label("last"),
        ).where(_events.c.subject == customer_id)
    ).one()
    return Customer(row.id, row.created_at, int(summary.events), summary.first, summary.last)


def timeline(uow: UnitOfWork, customer_id: str, *, limit: int, cursor: str | None = None) -> TimelinePage:
    """One page of a customer's events, newest first by event time."""
    _require_customer(uow, customer_id)
    query = sa.select(_events).where(_events.c.subject == customer_id)
    if cursor is not None:
        before_time, before_seq = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                _events.c.time < before_time,
                sa.and_(_events.c.time == before_time, _events.c.seq < before_seq),
            )
        )
    rows = uow.execute(query.order_by(_events.c.time.desc(), _events.c.seq.desc()).limit(limit + 1)).all()
    page = tuple(
        StoredEvent(
            seq=row.seq,
            received_at=row.received_at,
            event=Event(
                id=row.event_id,
                source=row.source,
                type=row.type,
                time=row.time,
                subject=row.subject,
                data=row.data,
                attributes=row.attributes,
            ),
        )
        for row in rows[:limit]
    )
    next_cursor = encode_cursor(page[-1].event.time, page[-1].seq) if len(rows) > limit else None
    return TimelinePage(page, next_cursor)


def _require_customer(uow: UnitOfWork, customer_id: str) -> None:
    found = uow.execute(sa.select(_customers.c.id).where(_customers.c.id == customer_id)).first()
    if found is None:
        raise NotFound(f"no customer {customer_id!r}")
