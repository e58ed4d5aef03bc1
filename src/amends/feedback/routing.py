"""Where feedback goes once triaged (docs/feedback.md#routing).

- spam: quarantined, nothing else; staff may release it (not spam), and it is routed then;
- negative (sentiment negative, or a low rating): a complaint, which opens or joins the customer's reactive
  case (recover/intake.py); without a customer to name, it waits in the inbox like the rest;
- a suggestion ("it would be great if…", "please add…"): a new suggestion in the tracker, the customer among
  those who asked;
- praise (positive, and no low rating): thanked in the answer, and shown to the staff member it names;
- everything but spam is due for an answer within the SLA.
"""

from __future__ import annotations

import re
from datetime import datetime

import sqlalchemy as sa

from amends.feedback.records import Feedback, FeedbackChannel, Route, is_low_rating, update_feedback
from amends.feedback.sla import ResponseSla
from amends.recover.actors import Actor
from amends.recover.intake import Intake
from amends.store import UnitOfWork, tables

__all__ = ["is_suggestion", "named_staff", "route_feedback"]

# How customers propose something, in the languages the shipped templates speak. A cue is a whole phrase.
_SUGGESTION = re.compile(
    r"\b(it would be (great|nice|good|better|helpful) (if|to)|would be (great|nice) if|(you|they) (should|could)"
    r"|please (add|make|offer|consider|bring)|i (wish|would like|'d like) (you|there|if|to see|an?|the)"
    r"|why (not|don't you)|(my )?suggestion|i suggest|(could|can) you (please )?(add|offer|make|provide)"
    r"|es wäre (schön|toll|gut|super)|bitte (bietet|fügt|macht)|ich wünsche mir|vorschlag"
    r"|ser[ií]a (genial|bueno|mejor|estupendo)|deber[ií]an|sugerencia|podr[ií]an (a[ñn]adir|ofrecer))",
    re.IGNORECASE,
)
_COMPLAINT_CHANNEL = {
    FeedbackChannel.PAGE: "web",
    FeedbackChannel.WEB_COMMENT: "web",
    FeedbackChannel.REVIEW: "review",
    FeedbackChannel.EMAIL: "email",
    FeedbackChannel.REPLY: "email",
    FeedbackChannel.PHONE: "phone",
}
_TITLE = 120
_COMPLAINT_TEXT = 20_000  # what a complaint keeps (recover/intake.py); the feedback keeps the whole text
_COMPLAINT_REFERENCE = 500


def is_suggestion(text: str) -> bool:
    """Whether the text proposes something (a phrase such as 'it would be great if' or 'please add')."""
    return _SUGGESTION.search(text) is not None


def named_staff(uow: UnitOfWork, text: str) -> str | None:
    """The active staff member the text names, by full name or by a first name only one of them has."""
    rows = uow.execute(sa.select(tables.staff.c.id, tables.staff.c.name).where(tables.staff.c.active.is_(True))).all()
    lowered = f" {_words(text)} "
    full = [row.id for row in rows if row.name and f" {_words(row.name)} " in lowered]
    if len(full) == 1:
        return str(full[0])
    firsts: dict[str, list[str]] = {}
    for row in rows:
        if row.name:
            firsts.setdefault(_words(row.name).split(" ")[0], []).append(str(row.id))
    named = [ids[0] for first, ids in firsts.items() if len(first) > 2 and len(ids) == 1 and f" {first} " in lowered]
    return named[0] if len(named) == 1 else None


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def route_feedback(
    uow: UnitOfWork,
    feedback: Feedback,
    *,
    intake: Intake,
    sla: ResponseSla,
    actor: Actor,
    now: datetime,
) -> Feedback:
    """Route stored feedback and set when it must be answered; returns it as routed. Spam: quarantined."""
    if feedback.spam:
        return update_feedback(uow, feedback.id, route=Route.SPAM.value, due_at=None, updated_at=now)
    due = sla.due(feedback.received_at)
    negative = feedback.sentiment == "negative" or is_low_rating(feedback.rating, feedback.scale)
    if negative and feedback.customer_id is not None:
        complaint, _new = intake.file_complaint(
            uow,
            source="feedback",
            external_id=str(feedback.id),
            customer_id=feedback.customer_id,
            channel=_COMPLAINT_CHANNEL[feedback.channel],
            text=(feedback.text or f"a rating of {feedback.rating} ({feedback.scale})")[:_COMPLAINT_TEXT],
            reference=None if feedback.reference is None else feedback.reference[:_COMPLAINT_REFERENCE],
            received_at=feedback.received_at,
            actor=actor,
            now=now,
        )
        return update_feedback(
            uow, feedback.id, route=Route.CASE.value, case_id=complaint.case_id, due_at=due, updated_at=now
        )
    if is_suggestion(feedback.text):
        suggestion_id = _new_suggestion(uow, feedback, now=now)
        return update_feedback(
            uow, feedback.id, route=Route.SUGGESTION.value, suggestion_id=suggestion_id, due_at=due, updated_at=now
        )
    if feedback.sentiment == "positive":
        staff_id = named_staff(uow, feedback.text)
        return update_feedback(
            uow, feedback.id, route=Route.PRAISE.value, staff_id=staff_id, due_at=due, updated_at=now
        )
    return update_feedback(uow, feedback.id, route=Route.NONE.value, due_at=due, updated_at=now)


def _new_suggestion(uow: UnitOfWork, feedback: Feedback, *, now: datetime) -> int:
    title = _title(feedback.text)
    suggestion_id = int(
        uow.execute(
            sa.insert(tables.suggestions)
            .values(title=title, status="new", note=None, created_at=now, updated_at=now, done_at=None)
            .returning(tables.suggestions.c.id)
        ).scalar_one()
    )
    uow.execute(
        sa.insert(tables.suggestion_askers).values(
            suggestion_id=suggestion_id, feedback_id=feedback.id, customer_id=feedback.customer_id
        )
    )
    return suggestion_id


def _title(text: str) -> str:
    """The suggestion's first sentence, short enough for a list."""
    first = re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0]
    return first if len(first) <= _TITLE else first[: _TITLE - 1].rstrip() + "…"
