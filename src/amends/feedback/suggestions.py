"""The suggestion tracker: what customers proposed, moved along by staff (new, planned, done, declined), and
"you said, we did": when one is done, every customer who asked is told, once, with what was done."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa

from amends.errors import Conflict, InvalidInput, NotFound
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.store import UnitOfWork, tables

if TYPE_CHECKING:
    from amends.feedback.service import FeedbackDesk

__all__ = [
    "Suggestion",
    "SuggestionStatus",
    "get_suggestion",
    "list_suggestions",
    "merge_suggestions",
    "move_suggestion",
]

_s = tables.suggestions
_a = tables.suggestion_askers


class SuggestionStatus(StrEnum):
    NEW = "new"
    PLANNED = "planned"
    DONE = "done"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class Suggestion:
    id: int
    title: str
    status: SuggestionStatus
    note: str | None
    askers: int
    notified: int
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None


def _query() -> sa.Select[tuple[object, ...]]:
    askers = (
        sa.select(
            _a.c.suggestion_id,
            sa.func.count().label("askers"),
            sa.func.count(_a.c.notified_at).label("notified"),
        )
        .group_by(_a.c.suggestion_id)
        .subquery()
    )
    return sa.select(
        _s,
        sa.func.coalesce(askers.c.askers, 0).label("askers"),
        sa.func.coalesce(askers.c.notified, 0).label("notified"),
    ).outerjoin(askers, askers.c.suggestion_id == _s.c.id)


def _from_row(row: object) -> Suggestion:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    values["status"] = SuggestionStatus(values["status"])
    return Suggestion(**values)


def get_suggestion(uow: UnitOfWork, suggestion_id: int) -> Suggestion:
    row = uow.execute(_query().where(_s.c.id == suggestion_id)).first()
    if row is None:
        raise NotFound(f"no suggestion {suggestion_id}")
    return _from_row(row)


def list_suggestions(uow: UnitOfWork, *, status: SuggestionStatus | None = None, limit: int = 100) -> list[Suggestion]:
    """Suggestions, the most asked-for first, then the latest."""
    query = _query()
    if status is not None:
        query = query.where(_s.c.status == status.value)
    rows = uow.execute(query.order_by(sa.literal_column("askers").desc(), _s.c.updated_at.desc()).limit(limit))
    return [_from_row(row) for row in rows]


def move_suggestion(
    uow: UnitOfWork,
    suggestion_id: int,
    *,
    status: SuggestionStatus,
    note: str | None,
    title: str | None,
    desk: FeedbackDesk,
    actor: Actor,
    now: datetime,
) -> Suggestion:
    """Set the status (and the note customers are told, and the title). Done: every customer who asked and
    has not been told yet is told, through outreach, once."""
    current = get_suggestion(uow, suggestion_id)
    if status is SuggestionStatus.DONE and not (note or current.note):
        raise InvalidInput("note", "say what was done: the customers who asked are told")
    values: dict[str, object] = {"status": status.value, "updated_at": now}
    if note is not None:
        values["note"] = note.strip()
    if title is not None:
        values["title"] = title.strip()
    if status is SuggestionStatus.DONE and current.done_at is None:
        values["done_at"] = now
    uow.execute(sa.update(_s).where(_s.c.id == suggestion_id).values(**values))
    audit(uow, actor, "suggestion.moved", f"suggestion:{suggestion_id}", at=now, status=status.value)
    if status is SuggestionStatus.DONE:
        _tell_askers(uow, get_suggestion(uow, suggestion_id), desk, now=now)
    return get_suggestion(uow, suggestion_id)


def _tell_askers(uow: UnitOfWork, suggestion: Suggestion, desk: FeedbackDesk, *, now: datetime) -> None:
    waiting = uow.execute(
        sa.select(_a.c.feedback_id, _a.c.customer_id).where(
            _a.c.suggestion_id == suggestion.id, _a.c.notified_at.is_(None), _a.c.customer_id.is_not(None)
        )
    ).all()
    for asker in waiting:
        text = (
            f"You suggested: {suggestion.title}\n\nWe did it. {suggestion.note}\n\n"
            f"Thank you for telling us. {desk.company}"
        )
        message = desk.outreach.answer(
            uow,
            str(asker.customer_id),
            subject=f"You said, we did: {suggestion.title}",
            text=text,
            key=f"suggestion:{suggestion.id}:done:{asker.feedback_id}",
            now=now,
        )
        uow.execute(
            sa.update(_a)
            .where(_a.c.suggestion_id == suggestion.id, _a.c.feedback_id == asker.feedback_id)
            .values(notified_at=now, message_id=message.id)
        )


def merge_suggestions(
    uow: UnitOfWork, suggestion_id: int, *, into: int, desk: FeedbackDesk, actor: Actor, now: datetime
) -> Suggestion:
    """The same idea twice: the askers of `suggestion_id` join `into`, and it is declined as a duplicate. Into
    a suggestion that is done already, the askers who join are told at once."""
    if suggestion_id == into:
        raise InvalidInput("into", "a suggestion cannot be merged into itself")
    source = get_suggestion(uow, suggestion_id)
    target = get_suggestion(uow, into)
    if source.status is SuggestionStatus.DONE:
        raise Conflict(f"suggestion {suggestion_id} is done: its askers were told")
    askers = uow.execute(sa.select(_a).where(_a.c.suggestion_id == suggestion_id)).all()
    for asker in askers:
        exists = uow.execute(
            sa.select(_a.c.feedback_id).where(_a.c.suggestion_id == into, _a.c.feedback_id == asker.feedback_id)
        ).first()
        if exists is None:
            uow.execute(
                sa.insert(_a).values(suggestion_id=into, feedback_id=asker.feedback_id, customer_id=asker.customer_id)
            )
    uow.execute(sa.delete(_a).where(_a.c.suggestion_id == suggestion_id))
    uow.execute(
        sa.update(tables.feedback).where(tables.feedback.c.suggestion_id == suggestion_id).values(suggestion_id=into)
    )
    uow.execute(
        sa.update(_s)
        .where(_s.c.id == suggestion_id)
        .values(status=SuggestionStatus.DECLINED.value, note=f"the same as suggestion {into}", updated_at=now)
    )
    uow.execute(sa.update(_s).where(_s.c.id == into).values(updated_at=now))
    audit(uow, actor, "suggestion.merged", f"suggestion:{suggestion_id}", at=now, into=into)
    if target.status is SuggestionStatus.DONE:
        _tell_askers(uow, get_suggestion(uow, into), desk, now=now)
    return get_suggestion(uow, into)
