"""How long personal data is kept: events older than `events_retention` are deleted, and what customers wrote
(feedback, replies with their addresses and the excerpts on the case thread, complaints), the answers to it and the
outbox's copies of what was sent to them (apologies, answers, requests, once sent, dead or cancelled) are erased
after `feedback_text_retention`, keeping the labels, ratings, kinds and counts the measures need. Runs in small
transactions, so the server and workers are never held up, from the background work once an hour or from
`amends retention` (docs/security.md#privacy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from amends.config import Settings
from amends.privacy.customers import ERASED
from amends.store import Database, UnitOfWork, tables

__all__ = ["Retained", "Retention"]

_BATCH = 5_000
t = tables


@dataclass(slots=True)
class Retained:
    """What one pass removed: events deleted, and texts erased by kind."""

    events: int = 0
    erased: dict[str, int] = field(default_factory=dict)

    @property
    def anything(self) -> bool:
        return bool(self.events or any(self.erased.values()))


# Each kind of text: its table, when it came, and what it becomes (text columns: ERASED where they must hold text,
# NULL where they may; JSON columns: the value given). `text` becomes ERASED in each: the mark of what is done.
_TEXTS: dict[str, tuple[sa.Table, sa.Column[datetime], dict[str, object]]] = {
    "feedback": (t.feedback, t.feedback.c.received_at,
                 {"text": ERASED, "liked": None, "disliked": None, "author": None, "reasons": {}}),
    "replies": (t.inbound_replies, t.inbound_replies.c.received_at,
                {"text": ERASED, "full_text": None, "html": None, "subject": ERASED, "from_address": ERASED,
                 "headers": [], "attachments": None}),
    "complaints": (t.complaints, t.complaints.c.received_at, {"text": ERASED}),
    "answers": (t.feedback_responses, t.feedback_responses.c.at, {"text": ERASED}),
    "messages": (t.messages, t.messages.c.created_at,
                 {"text": ERASED, "subject": ERASED, "recipient": ERASED, "html": None, "last_error": None}),
}  # fmt: skip
# Rows of a kind that stay whatever their age, being work, not a record: a message still waiting to go, and a card
# not posted yet (its hand-written copy is made from the message's text and address).
_UNPOSTED_CARD = sa.exists().where(t.card_tasks.c.message_id == t.messages.c.id, t.card_tasks.c.posted_at.is_(None))
_STILL_WORK: dict[str, sa.ColumnElement[bool]] = {"messages": sa.or_(t.messages.c.status == "pending", _UNPOSTED_CARD)}


@dataclass(frozen=True, slots=True)
class Retention:
    db: Database
    events_for: timedelta | None
    texts_for: timedelta | None
    every: timedelta = timedelta(hours=1)

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> Retention:
        return cls(db, settings.events_retention, settings.feedback_text_retention)

    @property
    def enabled(self) -> bool:
        return self.events_for is not None or self.texts_for is not None

    def run(self, now: datetime) -> Retained:
        """One whole pass: everything past its time goes, a batch per transaction."""
        done = Retained()
        if self.events_for is not None:
            done.events = self._delete_events(now - self.events_for)
        if self.texts_for is not None:
            for kind, (table, at, values) in _TEXTS.items():
                done.erased[kind] = self._erase(table, at, values, now - self.texts_for, _STILL_WORK.get(kind))
        return done

    def _delete_events(self, cutoff: datetime) -> int:
        # An event that arrived within the period stays even if it happened before it: it may be a late arrival
        # that detection has still to see.
        events, total = t.events, 0
        while True:
            with self.db.unit_of_work(writes=True) as uow:
                oldest = (
                    sa.select(events.c.seq)
                    .where(events.c.time < cutoff, events.c.received_at < cutoff)
                    .order_by(events.c.seq)
                    .limit(_BATCH)
                    .scalar_subquery()
                )
                gone = uow.execute(sa.delete(events).where(events.c.seq.in_(oldest))).rowcount
                uow.commit()
            total += gone
            if gone < _BATCH:
                return total

    def _erase(
        self,
        table: sa.Table,
        at: sa.Column[datetime],
        values: dict[str, object],
        cutoff: datetime,
        kept: sa.ColumnElement[bool] | None,
    ) -> int:
        key, total = table.c.id, 0
        past = sa.and_(at < cutoff, table.c.text != ERASED, *(() if kept is None else (sa.not_(kept),)))
        while True:
            with self.db.unit_of_work(writes=True) as uow:
                due = list(uow.execute(sa.select(key).where(past).order_by(key).limit(_BATCH)).scalars())
                if due:
                    uow.execute(sa.update(table).where(key.in_(due)).values(**values))
                    if table is t.inbound_replies:
                        _erase_reply_notes(uow, due)
                uow.commit()
            total += len(due)
            if len(due) < _BATCH:
                return total


def _erase_reply_notes(uow: UnitOfWork, reply_ids: list[int]) -> None:
    """Erase the excerpt of each reply on its case's thread: the contact note `email reply <id>: <its first words>`
    (outreach/replies.py), which keeps saying which reply it was."""
    replies, contacts = t.inbound_replies, t.case_contacts
    rows = uow.execute(
        sa.select(replies.c.id, replies.c.case_id).where(replies.c.id.in_(reply_ids), replies.c.case_id.is_not(None))
    ).all()
    if not rows:
        return
    statement = (
        sa.update(contacts)
        .where(
            contacts.c.case_id == sa.bindparam("b_case"),
            contacts.c.direction == "inbound",
            sa.func.substr(contacts.c.note, 1, sa.bindparam("b_length")) == sa.bindparam("b_prefix"),
        )
        .values(note=sa.bindparam("b_note"))
    )
    notes = [(row.case_id, f"email reply {row.id}:") for row in rows]
    uow.execute(
        statement,
        [{"b_case": case, "b_length": len(prefix), "b_prefix": prefix, "b_note": f"{prefix} {ERASED}"}
         for case, prefix in notes],
    )  # fmt: skip
