"""Asking for feedback, continuously: every new event of a configured type (an invoice, a delivery, a finished
service, a flight) and, if configured, every resolved case gets a feedback request, within the sample and the
per-customer cap, and its link goes out through outreach (docs/feedback.md#asking). And what the customer's
answer on the page does: the first is received by the feedback desk (triaged, routed); later ones change it
while it may be changed.

Events are read in ledger order, and resolved cases in the order of resolution, each from a cursor, in
batches, each in its own transaction. An event (a resolution) is read once it is `settle` old, so that one
stored by a transaction still open then, with a lower `seq` (an earlier time), is not passed over. Events
and resolutions older than the link's lifetime (history loaded from a file) are not asked about. Nothing
here reads how the customer is likely to answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from amends.config import Settings
from amends.errors import NotFound
from amends.feedback.records import Feedback
from amends.feedback.requests import (
    AskingPolicy,
    Created,
    FeedbackRequest,
    Skipped,
    case_interaction,
    create_request,
    edit_page_answer,
    event_interaction,
    language_of,
    mark_answered,
    page_answer,
    page_feedback,
    reference_of,
    send_request,
)
from amends.feedback.service import FeedbackDesk
from amends.outreach.service import Outreach
from amends.recover.actors import SYSTEM, Actor
from amends.recover.cases import WITHHELD
from amends.store import Database, UnitOfWork, tables

__all__ = ["Asked", "Asking", "answer_request"]

log = logging.getLogger(__name__)

_cursors = tables.feedback_cursors
_EVENTS = "events"
_CASES = "cases"
_SETTLE = timedelta(minutes=1)
_RESOLVED = ("resolved", "closed")


@dataclass(frozen=True, slots=True)
class Asked:
    """What one pass did: requests created, links sent, and interactions passed over (and why)."""

    created: int = 0
    sent: int = 0
    not_sampled: int = 0
    capped: int = 0
    too_old: int = 0

    def __add__(self, other: Asked) -> Asked:
        return Asked(
            self.created + other.created,
            self.sent + other.sent,
            self.not_sampled + other.not_sampled,
            self.capped + other.capped,
            self.too_old + other.too_old,
        )


@dataclass(frozen=True)
class Asking:
    db: Database
    policy: AskingPolicy
    outreach: Outreach
    settle: timedelta = _SETTLE

    @classmethod
    def from_settings(cls, db: Database, settings: Settings, outreach: Outreach) -> Asking:
        return cls(db, AskingPolicy.from_settings(settings), outreach)

    @property
    def enabled(self) -> bool:
        return bool(self.policy.event_types) or self.policy.resolved_cases

    def tick(self, now: datetime | None = None, *, batch: int = 500) -> Asked:
        """Ask about every event and resolved case not yet asked about, a batch per transaction."""
        now = now or datetime.now(UTC)
        total = Asked()
        if self.policy.event_types:
            while True:
                with self.db.unit_of_work(writes=True) as uow:
                    asked, looked_at = self.ask_about_events(uow, now=now, limit=batch)
                    uow.commit()
                total += asked
                if looked_at < batch:
                    break
        if self.policy.resolved_cases:
            while True:
                with self.db.unit_of_work(writes=True) as uow:
                    asked, looked_at = self.ask_about_resolved_cases(uow, now=now, limit=batch)
                    uow.commit()
                total += asked
                if looked_at < batch:
                    break
        if total.created:
            log.info("feedback: %d request(s) created, %d link(s) sent", total.created, total.sent)
        return total

    def ask_about_events(self, uow: UnitOfWork, *, now: datetime, limit: int) -> tuple[Asked, int]:
        """Create requests for up to `limit` events of the configured types past the cursor, and send their
        links; (what was done, how many events were looked at). The caller commits."""
        cursor = _lock_cursor(uow, _EVENTS, now)
        events = tables.events
        horizon = uow.execute(
            sa.select(sa.func.max(events.c.seq)).where(events.c.seq > cursor, events.c.received_at <= now - self.settle)
        ).scalar()
        if horizon is None:
            return Asked(), 0
        rows = uow.execute(
            sa.select(events.c.seq, events.c.source, events.c.event_id, events.c.type, events.c.time)
            .add_columns(events.c.subject, events.c.data)
            .where(events.c.seq > cursor, events.c.seq <= horizon, events.c.type.in_(self.policy.event_types))
            .order_by(events.c.seq)
            .limit(limit)
        ).all()
        asked = Asked()
        for row in rows:
            if row.time < now - self.policy.ttl:
                asked += Asked(too_old=1)
                continue
            asked += self._ask(
                uow,
                interaction=event_interaction(row.source, row.event_id),
                customer_id=row.subject,
                now=now,
                event_type=row.type,
                reference=reference_of(row.data),
            )
        position = rows[-1].seq if len(rows) == limit else horizon
        uow.execute(sa.update(_cursors).where(_cursors.c.name == _EVENTS).values(position=position, updated_at=now))
        return asked, len(rows)

    def ask_about_resolved_cases(self, uow: UnitOfWork, *, now: datetime, limit: int) -> tuple[Asked, int]:
        """Create requests for up to `limit` cases resolved since the cursor (and within the link's lifetime),
        and send their links; (what was done, how many cases were looked at). A case resolved again after
        reopening is looked at again, and keeps the request it has. The caller commits."""
        _lock_cursor(uow, _CASES, now)
        cursor = uow.execute(sa.select(_cursors.c.position, _cursors.c.at).where(_cursors.c.name == _CASES)).one()
        cases = tables.cases
        query = sa.select(cases.c.id, cases.c.customer_id, cases.c.resolved_at).where(
            cases.c.status.in_(_RESOLVED),
            cases.c.resolved_at <= now - self.settle,
            # A held-out case nobody raised gets nothing proactive, a feedback request neither (recover/holdout.py).
            sa.not_(WITHHELD),
        )
        if cursor.at is not None:
            query = query.where(
                sa.or_(
                    cases.c.resolved_at > cursor.at,
                    sa.and_(cases.c.resolved_at == cursor.at, cases.c.id > cursor.position),
                )
            )
        rows = uow.execute(query.order_by(cases.c.resolved_at, cases.c.id).limit(limit)).all()
        asked = Asked()
        for row in rows:
            if row.resolved_at < now - self.policy.ttl:
                asked += Asked(too_old=1)
                continue
            asked += self._ask(
                uow, interaction=case_interaction(row.id), customer_id=row.customer_id, now=now, case_id=row.id
            )
        if rows:
            last = rows[-1]
            uow.execute(
                sa.update(_cursors)
                .where(_cursors.c.name == _CASES)
                .values(position=last.id, at=last.resolved_at, updated_at=now)
            )
        return asked, len(rows)

    def _ask(
        self,
        uow: UnitOfWork,
        *,
        interaction: str,
        customer_id: str,
        now: datetime,
        event_type: str | None = None,
        reference: str | None = None,
        case_id: int | None = None,
    ) -> Asked:
        created: Created = create_request(
            uow,
            self.policy,
            interaction=interaction,
            customer_id=customer_id,
            now=now,
            language=language_of(uow, self.outreach, customer_id),
            case_id=case_id,
            event_type=event_type,
            reference=reference,
        )
        if created.skipped is Skipped.NOT_SAMPLED:
            return Asked(not_sampled=1)
        if created.skipped is Skipped.CAPPED:
            return Asked(capped=1)
        if created.request is None or not created.new:
            return Asked()
        message = send_request(uow, self.outreach, created.request, now=now)
        return Asked(created=1, sent=int(message is not None))


def _lock_cursor(uow: UnitOfWork, name: str, now: datetime) -> int:
    """The cursor's position, its row locked until the transaction ends (one process reads a batch at a time)."""
    insert: Any = postgresql.insert(_cursors) if uow.dialect == "postgresql" else sqlite.insert(_cursors)
    uow.execute(insert.values(name=name, position=0, updated_at=now).on_conflict_do_nothing(index_elements=["name"]))
    query = sa.select(_cursors.c.position).where(_cursors.c.name == name)
    if uow.dialect == "postgresql":
        query = query.with_for_update()
    return int(uow.execute(query).scalar_one())


def answer_request(
    uow: UnitOfWork,
    request: FeedbackRequest,
    *,
    liked: str | None,
    disliked: str | None,
    rating: int | None,
    desk: FeedbackDesk,
    now: datetime,
    actor: Actor = SYSTEM,
) -> tuple[Feedback, bool]:
    """Store the customer's answer on the request's page; (the feedback, whether it is their first). The first is
    received by the desk (checked, triaged, routed) and may be changed for `desk.editable_for`; a later one
    changes it (`edit_page_answer`: NoLongerEditable after that time). InvalidInput names what is wrong."""
    if request.is_expired(now):
        raise NotFound("this feedback request has expired")
    if page_answer(uow, request) is None:
        incoming = page_feedback(
            request, liked=liked, disliked=disliked, rating=rating, received_at=now, editable_for=desk.editable_for
        )
        feedback, new = desk.receive(uow, incoming, actor=actor, now=now)
        if new:
            mark_answered(uow, request, now=now)
            return feedback, True
    edited = edit_page_answer(uow, request, liked=liked, disliked=disliked, rating=rating, now=now)
    return desk.retriage(uow, edited, actor=actor, now=now), False
