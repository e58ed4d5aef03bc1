"""Reading cases back: a page of them for the queue, one with everything that happened on it, and the steps
that are overdue. What a staff member sees is limited as in recover/cases.py."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from amends.errors import InvalidInput
from amends.recover.actors import Actor
from amends.recover.cases import (
    Case,
    CaseStep,
    Origin,
    Status,
    case_from_row,
    load_steps,
    visibility,
    visible_case,
)
from amends.recover.intake import Complaint, complaint_from_row
from amends.recover.remedies import Approval, LedgerEntry, case_approvals, case_entries
from amends.store import UnitOfWork, tables
from amends.store.paging import decode_cursor, encode_cursor

__all__ = [
    "CaseDetail",
    "CaseFilter",
    "CasePage",
    "OverdueStep",
    "QueueItem",
    "QueuePage",
    "case_detail",
    "list_cases",
    "overdue_steps",
    "work_queue",
]

_cases = tables.cases
_steps = tables.case_steps
_links = tables.case_incidents
_incidents = tables.incidents


@dataclass(frozen=True, slots=True)
class CaseFilter:
    status: Status | None = None
    origin: Origin | None = None
    owner_id: str | None = None
    team: str | None = None
    customer_id: str | None = None
    rule_id: str | None = None  # cases one of whose incidents this rule found
    overdue: bool = False  # only cases with a step past its due time
    mine: bool = False  # only the actor's own


@dataclass(frozen=True, slots=True)
class CasePage:
    cases: tuple[Case, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class IncidentRef:
    id: int
    rule_id: str
    key: str
    severity: int
    status: str
    failure_at: datetime
    facts: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Handoff:
    from_id: str | None
    to_id: str
    reason: str
    by_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Contact:
    direction: str
    channel: str
    at: datetime
    by_id: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class CaseDetail:
    case: Case
    steps: tuple[CaseStep, ...]
    incidents: tuple[IncidentRef, ...]
    handoffs: tuple[Handoff, ...]
    contacts: tuple[Contact, ...]
    complaints: tuple[Complaint, ...]
    approvals: tuple[Approval, ...]
    ledger: tuple[LedgerEntry, ...]


@dataclass(frozen=True, slots=True)
class OverdueStep:
    case_id: int
    customer_id: str
    owner_id: str | None
    kind: str
    title: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A case in the work queue, with the step that is due next and the rules of its incidents."""

    case: Case
    next_kind: str | None
    next_title: str | None
    next_due: datetime | None
    rules: tuple[str, ...]

    def overdue(self, now: datetime) -> bool:
        return self.next_due is not None and self.next_due < now


@dataclass(frozen=True, slots=True)
class QueuePage:
    items: tuple[QueueItem, ...]
    total: int
    offset: int
    limit: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


def work_queue(
    uow: UnitOfWork, flt: CaseFilter, *, actor: Actor, now: datetime, limit: int = 50, offset: int = 0
) -> QueuePage:
    """The cases to work (open ones unless the filter names a status), the one whose next step is due soonest
    first, then the most severe; cases with nothing due come last. Every filter narrows."""
    if not 1 <= limit <= 500:
        raise InvalidInput("limit", "1 to 500")
    if not 0 <= offset <= 100_000:
        raise InvalidInput("offset", "0 to 100000")
    flt = flt if flt.status is not None else replace(flt, status=Status.OPEN)
    next_due = (
        sa.select(sa.func.min(_steps.c.due_at))
        .where(_steps.c.case_id == _cases.c.id, _steps.c.completed_at.is_(None))
        .scalar_subquery()
    )
    where = _case_conditions(flt, actor, now)
    total = uow.execute(sa.select(sa.func.count()).select_from(_cases).where(*where)).scalar_one()
    rows = uow.execute(
        sa.select(_cases, next_due.label("next_due"))
        .where(*where)
        .order_by(next_due.is_(None), next_due, _cases.c.severity.desc(), _cases.c.id)
        .limit(limit)
        .offset(offset)
    ).all()
    cases = [case_from_row(row) for row in rows]
    ids = [case.id for case in cases]
    due_steps: dict[int, tuple[str, str]] = {}
    if ids:
        for step in uow.execute(
            sa.select(_steps.c.case_id, _steps.c.kind, _steps.c.title)
            .where(_steps.c.case_id.in_(ids), _steps.c.completed_at.is_(None), _steps.c.due_at.is_not(None))
            .order_by(_steps.c.case_id, _steps.c.due_at, _steps.c.position)
        ):
            due_steps.setdefault(step.case_id, (step.kind, step.title))
    rules: dict[int, list[str]] = {}
    if ids:
        for link in uow.execute(
            sa.select(_links.c.case_id, _incidents.c.rule_id)
            .join(_incidents, _incidents.c.id == _links.c.incident_id)
            .where(_links.c.case_id.in_(ids))
            .order_by(_links.c.case_id, _incidents.c.id)
        ):
            known = rules.setdefault(link.case_id, [])
            if link.rule_id not in known:
                known.append(link.rule_id)
    items = tuple(
        QueueItem(
            case,
            due_steps.get(case.id, (None, None))[0],
            due_steps.get(case.id, (None, None))[1],
            row.next_due,
            tuple(rules.get(case.id, ())),
        )
        for case, row in zip(cases, rows, strict=True)
    )
    return QueuePage(items, total, offset, limit)


def _case_conditions(flt: CaseFilter, actor: Actor, now: datetime) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions of a filter, with what the actor may see."""
    where: list[sa.ColumnElement[bool]] = []
    visible = visibility(actor)
    if visible is not None:
        where.append(visible)
    if flt.mine:
        member = actor.person("listing your cases")
        where.append(_cases.c.owner_id == member.id)
    for column, value in (
        (_cases.c.status, None if flt.status is None else flt.status.value),
        (_cases.c.origin, None if flt.origin is None else flt.origin.value),
        (_cases.c.owner_id, flt.owner_id),
        (_cases.c.team, flt.team),
        (_cases.c.customer_id, flt.customer_id),
    ):
        if value is not None:
            where.append(column == value)
    if flt.rule_id is not None:
        where.append(
            sa.exists().where(
                _links.c.case_id == _cases.c.id,
                _links.c.incident_id == _incidents.c.id,
                _incidents.c.rule_id == flt.rule_id,
            )
        )
    if flt.overdue:
        where.append(_cases.c.status != Status.CLOSED.value)
        where.append(
            sa.exists().where(_steps.c.case_id == _cases.c.id, _steps.c.completed_at.is_(None), _steps.c.due_at < now)
        )
    return where


def list_cases(
    uow: UnitOfWork, flt: CaseFilter, *, actor: Actor, now: datetime, limit: int = 50, cursor: str | None = None
) -> CasePage:
    """Cases newest first by opening, a page at a time; every filter narrows."""
    if not 1 <= limit <= 500:
        raise InvalidInput("limit", "1 to 500")
    query = sa.select(_cases).where(*_case_conditions(flt, actor, now))
    if cursor is not None:
        opened, case_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(_cases.c.opened_at < opened, sa.and_(_cases.c.opened_at == opened, _cases.c.id < case_id))
        )
    rows = uow.execute(query.order_by(_cases.c.opened_at.desc(), _cases.c.id.desc()).limit(limit + 1)).all()
    cases = tuple(case_from_row(row) for row in rows[:limit])
    following = encode_cursor(cases[-1].opened_at, cases[-1].id) if len(rows) > limit else None
    return CasePage(cases, following)


def case_detail(uow: UnitOfWork, case_id: int, *, actor: Actor) -> CaseDetail:
    """Everything on one case; NotFound unless the actor may see it."""
    case = visible_case(uow, case_id, actor)
    incidents = uow.execute(
        sa.select(_incidents)
        .join(_links, _links.c.incident_id == _incidents.c.id)
        .where(_links.c.case_id == case_id)
        .order_by(_incidents.c.id)
    )
    handoffs = uow.execute(
        sa.select(tables.handoffs).where(tables.handoffs.c.case_id == case_id).order_by(tables.handoffs.c.id)
    )
    contacts = uow.execute(
        sa.select(tables.case_contacts)
        .where(tables.case_contacts.c.case_id == case_id)
        .order_by(tables.case_contacts.c.at, tables.case_contacts.c.id)
    )
    complaints = uow.execute(
        sa.select(tables.complaints).where(tables.complaints.c.case_id == case_id).order_by(tables.complaints.c.id)
    )
    return CaseDetail(
        case=case,
        steps=tuple(load_steps(uow, case_id)),
        incidents=tuple(
            IncidentRef(r.id, r.rule_id, r.key, r.severity, r.status, r.failure_at, r.facts) for r in incidents
        ),
        handoffs=tuple(Handoff(r.from_id, r.to_id, r.reason, r.by_id, r.at) for r in handoffs),
        contacts=tuple(Contact(r.direction, r.channel, r.at, r.by_id, r.note) for r in contacts),
        complaints=tuple(complaint_from_row(r) for r in complaints),
        approvals=tuple(case_approvals(uow, case_id)),
        ledger=tuple(case_entries(uow, case_id)),
    )


def overdue_steps(uow: UnitOfWork, *, actor: Actor, now: datetime, limit: int = 100) -> list[OverdueStep]:
    """Steps past their due time on cases not closed, the most overdue first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "1 to 1000")
    query = (
        sa.select(_cases.c.id, _cases.c.customer_id, _cases.c.owner_id, _steps.c.kind, _steps.c.title, _steps.c.due_at)
        .join(_steps, _steps.c.case_id == _cases.c.id)
        .where(_cases.c.status != Status.CLOSED.value, _steps.c.completed_at.is_(None), _steps.c.due_at < now)
        .order_by(_steps.c.due_at, _cases.c.id)
        .limit(limit)
    )
    visible = visibility(actor)
    if visible is not None:
        query = query.where(visible)
    return [OverdueStep(r.id, r.customer_id, r.owner_id, r.kind, r.title, r.due_at) for r in uow.execute(query)]
