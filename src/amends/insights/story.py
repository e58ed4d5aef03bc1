"""A customer's story: their events, incidents, cases, messages, remedies, complaints and feedback in one time
line, newest first. Each kind is read through an index on the customer (or their cases) and only up to the page
asked for, so a customer with a long history costs no more than one with a short one.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from amends.errors import InvalidInput
from amends.store import UnitOfWork, tables

__all__ = ["Moment", "StoryPage", "customer_story"]

MomentKind = Literal["event", "incident", "case", "message", "remedy", "complaint", "feedback"]


@dataclass(frozen=True, slots=True)
class Moment:
    """One thing in a customer's story: when, what kind, a headline, details as name/value pairs, and the case
    it belongs to (if any)."""

    at: datetime
    kind: MomentKind
    title: str
    details: tuple[tuple[str, str], ...]
    case_id: int | None = None
    text: str | None = None  # what the customer or we wrote, shown as text


@dataclass(frozen=True, slots=True)
class StoryPage:
    moments: tuple[Moment, ...]
    older: datetime | None  # pass as `before` for the next page; None at the start of the story


def customer_story(
    uow: UnitOfWork,
    customer_id: str,
    *,
    before: datetime | None = None,
    limit: int = 100,
    rule_titles: dict[str, str] | None = None,
) -> StoryPage:
    """The `limit` newest moments of a customer's story before `before` (default: all of it)."""
    if not 1 <= limit <= 500:
        raise InvalidInput("limit", "1 to 500")
    titles = rule_titles or {}
    case_ids = [
        r.id for r in uow.execute(sa.select(tables.cases.c.id).where(tables.cases.c.customer_id == customer_id))
    ]
    sources = [
        _events(uow, customer_id, before, limit),
        _incidents(uow, customer_id, before, limit, titles),
        _cases(uow, customer_id, before, limit),
        _messages(uow, customer_id, before, limit),
        _remedies(uow, case_ids, before, limit),
        _complaints(uow, case_ids, before, limit),
        _feedback(uow, customer_id, before, limit),
    ]
    merged = list(heapq.merge(*sources, key=lambda moment: moment.at, reverse=True))
    page = tuple(merged[:limit])
    older = page[-1].at if len(merged) > limit else None
    return StoryPage(page, older)


def _newest(query: sa.Select[Any], column: sa.ColumnElement[datetime], before: datetime | None, limit: int) -> Any:
    if before is not None:
        query = query.where(column < before)
    return query.order_by(column.desc()).limit(limit)


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pairs(data: Any, limit: int = 6) -> tuple[tuple[str, str], ...]:
    if not isinstance(data, dict):
        return ()
    return tuple((str(k).replace("_", " "), _short(v)) for k, v in list(data.items())[:limit])


def _events(uow: UnitOfWork, customer_id: str, before: datetime | None, limit: int) -> Iterator[Moment]:
    e = tables.events
    query = _newest(sa.select(e.c.type, e.c.time, e.c.data, e.c.source).where(e.c.subject == customer_id), e.c.time,
                    before, limit)  # fmt: skip
    for row in uow.execute(query):
        yield Moment(row.time, "event", row.type, _pairs(row.data))


def _incidents(
    uow: UnitOfWork, customer_id: str, before: datetime | None, limit: int, titles: dict[str, str]
) -> Iterator[Moment]:
    i, links = tables.incidents, tables.case_incidents
    joined = sa.select(i, links.c.case_id).outerjoin(links, links.c.incident_id == i.c.id)
    query = _newest(joined.where(i.c.customer_id == customer_id), i.c.failure_at, before, limit)
    for row in uow.execute(query):
        details = (("rule", row.rule_id), ("key", _short(row.key)), ("severity", str(row.severity)),
                   ("status", row.status), *_pairs(row.facts, 4))  # fmt: skip
        yield Moment(row.failure_at, "incident", titles.get(row.rule_id) or row.rule_id, details, row.case_id)


def _cases(uow: UnitOfWork, customer_id: str, before: datetime | None, limit: int) -> Iterator[Moment]:
    c = tables.cases
    rows = uow.execute(_newest(sa.select(c).where(c.c.customer_id == customer_id), c.c.opened_at, None, limit))
    moments = []
    for row in rows:
        common = (("playbook", row.playbook), ("owner", row.owner_id or "nobody"))
        moments.append(Moment(row.opened_at, "case", f"{row.origin.title()} case opened", common, row.id))
        if row.first_contact_at is not None:
            moments.append(Moment(row.first_contact_at, "case", "First contact with the customer", (), row.id))
        if row.resolved_at is not None:
            moments.append(Moment(row.resolved_at, "case", "Case resolved", (), row.id, row.resolution))
        if row.closed_at is not None:
            moments.append(Moment(row.closed_at, "case", "Case closed", (), row.id))
    kept = [m for m in moments if before is None or m.at < before]
    yield from sorted(kept, key=lambda m: m.at, reverse=True)


def _messages(uow: UnitOfWork, customer_id: str, before: datetime | None, limit: int) -> Iterator[Moment]:
    m = tables.messages
    query = _newest(sa.select(m).where(m.c.customer_id == customer_id), m.c.created_at, before, limit)
    for row in uow.execute(query):
        details = (("channel", row.channel), ("to", _short(row.recipient)), ("status", row.status))
        title = f"We wrote: {row.kind.replace('_', ' ')}"
        yield Moment(row.created_at, "message", title, details, row.case_id, _short(row.subject, 200))


def _remedies(uow: UnitOfWork, case_ids: list[int], before: datetime | None, limit: int) -> Iterable[Moment]:
    if not case_ids:
        return ()
    ledger = tables.ledger
    query = _newest(sa.select(ledger).where(ledger.c.case_id.in_(case_ids)), ledger.c.at, before, limit)
    moments = []
    for row in uow.execute(query):
        what = "Reversed" if row.reverses_id else "Granted"
        amount = f"{row.amount:f}".removesuffix(".00")
        details = (("by", row.granted_by), ("policy", row.policy))
        moments.append(
            Moment(row.at, "remedy", f"{what}: {amount} {row.unit} {row.kind}", details, row.case_id, row.note)
        )
    return moments


def _complaints(uow: UnitOfWork, case_ids: list[int], before: datetime | None, limit: int) -> Iterable[Moment]:
    if not case_ids:
        return ()
    c = tables.complaints
    query = _newest(sa.select(c).where(c.c.case_id.in_(case_ids)), c.c.received_at, before, limit)
    return [
        Moment(row.received_at, "complaint", f"The customer complained ({row.channel})", (), row.case_id, row.text)
        for row in uow.execute(query)
    ]


def _feedback(uow: UnitOfWork, customer_id: str, before: datetime | None, limit: int) -> Iterator[Moment]:
    f = tables.feedback
    query = _newest(sa.select(f).where(f.c.customer_id == customer_id), f.c.received_at, before, limit)
    for row in uow.execute(query):
        details = [("sentiment", row.sentiment), ("topic", row.topic or "none"), ("urgency", row.urgency)]
        if row.rating is not None:
            details.insert(0, ("rating", f"{row.rating} ({row.scale})"))
        if row.spam:
            details.insert(0, ("spam", "quarantined"))
        yield Moment(row.received_at, "feedback", f"Feedback ({row.channel})", tuple(details), row.case_id, row.text)
