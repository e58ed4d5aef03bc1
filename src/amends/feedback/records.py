"""What customers wrote: stored once, triaged, routed, and due for an answer.

Feedback comes from the page of a feedback request, through the API (an email, a comment on the website, a
review, a note of a phone call) or as a reply to one of our emails. Each is stored once (`dedup_key`), with
its triage labels and why, and routed:

- **spam** is quarantined: kept, reviewable, never routed and never answered;
- **negative** feedback (negative sentiment, or a low rating) opens or joins a reactive case, as a complaint;
- a **suggestion** is tracked to its outcome, and the customers who asked are told when it is done;
- **praise** is thanked, and shown to the staff member it names;
- everything but spam is due for an answer within the SLA (`due_at`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from amends.errors import InvalidInput, NotFound
from amends.store import UnitOfWork, tables
from amends.store.paging import decode_cursor, encode_cursor

__all__ = [
    "MAX_TEXT",
    "TRUNCATED",
    "Feedback",
    "FeedbackChannel",
    "FeedbackIn",
    "Labels",
    "Route",
    "Scale",
    "checked",
    "customer_feedback",
    "get_feedback",
    "is_high_rating",
    "is_low_rating",
    "list_feedback",
    "store_feedback",
    "truncated",
    "update_feedback",
]

_feedback = tables.feedback
MAX_TEXT = 10_000  # characters of each text kept; longer is cut, with the marker, never refused
TRUNCATED = " … [truncated]"
_KEY = 300
_MAX_LIMIT = 500


class FeedbackChannel(StrEnum):
    PAGE = "page"  # the public page of a feedback request
    EMAIL = "email"
    WEB_COMMENT = "web_comment"
    REVIEW = "review"
    PHONE = "phone"  # a note staff made of a call
    REPLY = "reply"  # a reply to one of our emails


class Scale(StrEnum):
    CSAT = "csat"  # 1-5, 5 best
    NPS = "nps"  # 0-10, 10 best
    EFFORT = "effort"  # 1-5, 1 least effort (best)

    @property
    def bounds(self) -> tuple[int, int]:
        return (0, 10) if self is Scale.NPS else (1, 5)


class Route(StrEnum):
    CASE = "case"
    SUGGESTION = "suggestion"
    PRAISE = "praise"
    SPAM = "spam"
    NONE = "none"


class Labels(Protocol):
    """What triage says of a text (feedback/triage)."""

    @property
    def spam(self) -> bool: ...
    @property
    def spam_score(self) -> float: ...
    @property
    def sentiment(self) -> str: ...
    @property
    def sentiment_score(self) -> float: ...
    @property
    def topic(self) -> str | None: ...
    @property
    def urgency(self) -> str: ...
    @property
    def model(self) -> str: ...


@dataclass(frozen=True, slots=True)
class FeedbackIn:
    """Feedback as it arrives, before it is stored. `dedup_key` makes a retry the same feedback."""

    dedup_key: str
    channel: FeedbackChannel
    received_at: datetime
    customer_id: str | None = None
    author: str | None = None
    liked: str | None = None
    disliked: str | None = None
    text: str | None = None  # what they wrote when there were no two questions
    rating: int | None = None
    scale: Scale | None = None
    language: str | None = None
    reference: str | None = None
    request_id: int | None = None
    editable_until: datetime | None = None

    @property
    def full_text(self) -> str:
        """Everything they wrote, as triage reads it."""
        return "\n\n".join(part for part in (self.text, self.liked, self.disliked) if part)


@dataclass(frozen=True, slots=True)
class Feedback:
    id: int
    dedup_key: str
    request_id: int | None
    customer_id: str | None
    author: str | None
    channel: FeedbackChannel
    liked: str | None
    disliked: str | None
    text: str
    rating: int | None
    scale: Scale | None
    language: str | None
    reference: str | None
    received_at: datetime
    created_at: datetime
    updated_at: datetime
    editable_until: datetime | None
    spam: bool
    spam_score: float
    sentiment: str
    sentiment_score: float
    topic: str | None
    urgency: str
    reasons: Mapping[str, Any] = field(hash=False)
    model: str = ""
    route: Route = Route.NONE
    case_id: int | None = None
    suggestion_id: int | None = None
    staff_id: str | None = None
    due_at: datetime | None = None
    responded_at: datetime | None = None

    @property
    def answered(self) -> bool:
        return self.responded_at is not None

    def overdue(self, now: datetime) -> bool:
        return self.due_at is not None and self.responded_at is None and self.due_at < now


def truncated(text: str | None, *, limit: int = MAX_TEXT) -> str | None:
    """The text, cut at `limit` characters with a marker when longer; control characters but line breaks and
    tabs dropped (PostgreSQL keeps no NUL)."""
    if text is None:
        return None
    clean = _CONTROL.sub("", text).strip()
    if len(clean) > limit:
        return clean[:limit].rstrip() + TRUNCATED
    return clean or None


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def is_low_rating(rating: int | None, scale: Scale | None) -> bool:
    """A rating that says the customer was let down: CSAT 1-2, NPS 0-6 (a detractor), effort 4-5."""
    if rating is None or scale is None:
        return False
    if scale is Scale.CSAT:
        return rating <= 2
    if scale is Scale.NPS:
        return rating <= 6
    return rating >= 4


def is_high_rating(rating: int | None, scale: Scale | None) -> bool:
    """A rating that says the customer was pleased: CSAT 4-5, NPS 9-10 (a promoter), effort 1-2."""
    if rating is None or scale is None:
        return False
    if scale is Scale.CSAT:
        return rating >= 4
    if scale is Scale.NPS:
        return rating >= 9
    return rating <= 2


def checked(incoming: FeedbackIn, now: datetime) -> FeedbackIn:
    """The feedback with its texts cut to size, or InvalidInput naming what is wrong."""
    if not incoming.dedup_key or len(incoming.dedup_key) > _KEY:
        raise InvalidInput("id", f"1-{_KEY - 50} characters")
    if incoming.received_at.tzinfo is None:
        raise InvalidInput("received_at", "needs a time zone")
    if incoming.received_at > now:
        raise InvalidInput("received_at", "is in the future")
    if incoming.customer_id is not None and not 1 <= len(incoming.customer_id) <= 200:
        raise InvalidInput("customer", "1-200 characters")
    if incoming.rating is not None:
        if incoming.scale is None:
            raise InvalidInput("scale", "a rating needs its scale: csat, nps or effort")
        low, high = incoming.scale.bounds
        if not low <= incoming.rating <= high:
            raise InvalidInput("rating", f"{incoming.scale.value} ratings are {low} to {high}, got {incoming.rating}")
    text, liked, disliked = (truncated(incoming.text), truncated(incoming.liked), truncated(incoming.disliked))
    if not (text or liked or disliked) and incoming.rating is None:
        raise InvalidInput("text", "say something: a text, an answer to one of the questions, or a rating")
    return replace(
        incoming,
        text=text,
        liked=liked,
        disliked=disliked,
        author=truncated(incoming.author, limit=200),
        reference=truncated(incoming.reference, limit=500),
    )


def store_feedback(
    uow: UnitOfWork, incoming: FeedbackIn, labels: Labels, reasons: Mapping[str, Any], *, now: datetime
) -> tuple[Feedback, bool]:
    """Insert the feedback with its labels, route `none` and no due time yet (routing sets them); (the stored
    feedback, whether it is new). The same `dedup_key` again returns what is stored and changes nothing."""
    values = {
        "dedup_key": incoming.dedup_key,
        "request_id": incoming.request_id,
        "customer_id": incoming.customer_id,
        "author": incoming.author,
        "channel": incoming.channel.value,
        "liked": incoming.liked,
        "disliked": incoming.disliked,
        "text": incoming.full_text,
        "rating": incoming.rating,
        "scale": None if incoming.scale is None else incoming.scale.value,
        "language": incoming.language,
        "reference": incoming.reference,
        "received_at": incoming.received_at,
        "created_at": now,
        "updated_at": now,
        "editable_until": incoming.editable_until,
        "spam": labels.spam,
        "spam_score": float(labels.spam_score),
        "sentiment": labels.sentiment,
        "sentiment_score": float(labels.sentiment_score),
        "topic": labels.topic,
        "urgency": labels.urgency,
        "reasons": dict(reasons),
        "model": labels.model,
        "route": Route.NONE.value,
    }
    insert: Any = postgresql.insert(_feedback) if uow.dialect == "postgresql" else sqlite.insert(_feedback)
    row = uow.execute(
        insert.values(**values).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(*_feedback.c)
    ).first()
    if row is not None:
        return feedback_from_row(row), True
    existing = uow.execute(sa.select(_feedback).where(_feedback.c.dedup_key == incoming.dedup_key)).one()
    return feedback_from_row(existing), False


def get_feedback(uow: UnitOfWork, feedback_id: int, *, for_update: bool = False) -> Feedback:
    query = sa.select(_feedback).where(_feedback.c.id == feedback_id)
    if for_update and uow.dialect == "postgresql":
        query = query.with_for_update()
    row = uow.execute(query).first()
    if row is None:
        raise NotFound(f"no feedback {feedback_id}")
    return feedback_from_row(row)


def customer_feedback(uow: UnitOfWork, customer_id: str, *, since: datetime, limit: int = 50) -> list[Feedback]:
    """What one customer wrote since `since`, newest first (spam included: staff see it is quarantined)."""
    query = (
        sa.select(_feedback)
        .where(_feedback.c.customer_id == customer_id, _feedback.c.received_at >= since)
        .order_by(_feedback.c.received_at.desc(), _feedback.c.id.desc())
        .limit(limit)
    )
    return [feedback_from_row(row) for row in uow.execute(query)]


def feedback_from_row(row: Any) -> Feedback:
    values = dict(row._mapping)
    values["channel"] = FeedbackChannel(values["channel"])
    values["scale"] = None if values["scale"] is None else Scale(values["scale"])
    values["route"] = Route(values["route"])
    return Feedback(**values)


def update_feedback(uow: UnitOfWork, feedback_id: int, **values: Any) -> Feedback:
    row = uow.execute(
        sa.update(_feedback).where(_feedback.c.id == feedback_id).values(**values).returning(*_feedback.c)
    ).one()
    return feedback_from_row(row)


def list_feedback(
    uow: UnitOfWork,
    *,
    unanswered: bool = False,
    route: Route | None = None,
    channel: FeedbackChannel | None = None,
    customer_id: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[Feedback], str | None]:
    """One page of feedback and the cursor of the next (None on the last). `unanswered`: what waits for an
    answer, the earliest due first (spam never waits); otherwise the newest first."""
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {_MAX_LIMIT}, got {limit}")
    f = _feedback
    query = sa.select(f)
    if unanswered:
        query = query.where(f.c.responded_at.is_(None), f.c.due_at.is_not(None))
    if route is not None:
        query = query.where(f.c.route == route.value)
    if channel is not None:
        query = query.where(f.c.channel == channel.value)
    if customer_id is not None:
        query = query.where(f.c.customer_id == customer_id)
    if unanswered:
        if cursor is not None:
            after_time, after_id = decode_cursor(cursor)
            query = query.where(sa.or_(f.c.due_at > after_time, sa.and_(f.c.due_at == after_time, f.c.id > after_id)))
        query = query.order_by(f.c.due_at, f.c.id)
    else:
        if cursor is not None:
            before_time, before_id = decode_cursor(cursor)
            query = query.where(
                sa.or_(f.c.received_at < before_time, sa.and_(f.c.received_at == before_time, f.c.id < before_id))
            )
        query = query.order_by(f.c.received_at.desc(), f.c.id.desc())
    rows = uow.execute(query.limit(limit + 1)).all()
    page = [feedback_from_row(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        instant = last.due_at if unanswered and last.due_at is not None else last.received_at
        next_cursor = encode_cursor(instant, last.id)
    return page, next_cursor
