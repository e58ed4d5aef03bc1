"""Feedback requests: asking about one interaction (an invoice, a finished service, a flight, a resolved case)
with a signed, expiring link to a public page (docs/feedback.md#asking).

A request is unique on its interaction (`event:<source>|<id>`, `case:<id>`): asking twice about the same thing
is one request. Whether to ask is decided by sampling (a hash of the interaction, so it is reproducible) and by
a cap per customer in 30 days, and by nothing else. Nothing here reads a risk score, a sentiment or a case
history: a customer likely to answer badly is asked like everyone else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from amends.config import Settings
from amends.errors import Conflict, InvalidInput, NotFound
from amends.feedback.records import Feedback, FeedbackChannel, FeedbackIn, Scale, checked, feedback_from_row
from amends.outreach.links import FeedbackLink
from amends.outreach.outbox import Message
from amends.outreach.profiles import customer_profile
from amends.outreach.service import Outreach
from amends.store import UnitOfWork, tables

__all__ = [
    "MONTH",
    "AskingPolicy",
    "Created",
    "FeedbackRequest",
    "NoLongerEditable",
    "Skipped",
    "case_interaction",
    "create_request",
    "edit_page_answer",
    "event_interaction",
    "get_request",
    "is_sampled",
    "page_answer",
    "request_for_link",
    "send_request",
]

_requests = tables.feedback_requests
_feedback = tables.feedback
MONTH = timedelta(days=30)  # the window of the per-customer cap
_INTERACTION = 300


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    id: int
    interaction: str
    customer_id: str
    case_id: int | None
    event_type: str | None
    reference: str | None
    scale: Scale | None
    language: str | None
    created_at: datetime
    expires_at: datetime
    message_id: int | None
    answered_at: datetime | None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    @property
    def dedup_key(self) -> str:
        """The key of the feedback its page stores: one answer per request."""
        return f"request:{self.id}"


class Skipped(StrEnum):
    """Why no request was created. Neither is ever about how the customer is likely to answer."""

    NOT_SAMPLED = "not_sampled"  # outside the sample (feedback_sample_rate)
    CAPPED = "capped"  # the customer was asked feedback_cap_per_month times in the last 30 days


@dataclass(frozen=True, slots=True)
class Created:
    """What `create_request` did: the request (new, or the one the interaction already had), or why none."""

    request: FeedbackRequest | None
    new: bool = False
    skipped: Skipped | None = None


@dataclass(frozen=True)
class AskingPolicy:
    """Which interactions are asked about, how, and how often."""

    event_types: tuple[str, ...] = ()
    resolved_cases: bool = False
    scale: Scale | None = Scale.CSAT
    ttl: timedelta = timedelta(days=30)
    sample_rate: float = 1.0
    cap_per_month: int = 2  # 0: no cap

    def __post_init__(self) -> None:
        if not 0 <= self.sample_rate <= 1:
            raise InvalidInput("feedback_sample_rate", f"a share from 0 to 1, got {self.sample_rate}")
        if self.cap_per_month < 0:
            raise InvalidInput("feedback_cap_per_month", f"0 (no cap) or more, got {self.cap_per_month}")
        if self.ttl <= timedelta(0):
            raise InvalidInput("feedback_request_ttl", "must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> AskingPolicy:
        return cls(
            event_types=settings.feedback_request_event_types,
            resolved_cases=settings.feedback_request_resolved_cases,
            scale=None if settings.feedback_scale == "none" else Scale(settings.feedback_scale),
            ttl=settings.feedback_request_ttl,
            sample_rate=settings.feedback_sample_rate,
            cap_per_month=settings.feedback_cap_per_month,
        )


class NoLongerEditable(Conflict):
    """An answer on a feedback page whose time for changes is over."""


def event_interaction(source: str, event_id: str) -> str:
    return f"event:{source}|{event_id}"


def case_interaction(case_id: int) -> str:
    return f"case:{case_id}"


def is_sampled(interaction: str, rate: float) -> bool:
    """Whether the interaction is in a sample of `rate` (0 to 1): a hash of it, so the answer never changes
    and needs nothing stored."""
    if rate >= 1:
        return True
    digest = hashlib.blake2b(interaction.encode(), digest_size=8, person=b"amends-sample").digest()
    return int.from_bytes(digest) / 2**64 < rate


def create_request(
    uow: UnitOfWork,
    policy: AskingPolicy,
    *,
    interaction: str,
    customer_id: str,
    now: datetime,
    language: str | None,
    case_id: int | None = None,
    event_type: str | None = None,
    reference: str | None = None,
    sample: bool = True,
) -> Created:
    """The feedback request for an interaction: the one it has, else a new one, unless the interaction is out of
    the sample (with `sample`) or the customer has had `cap_per_month` requests in the last 30 days. The caller
    commits. A request asked for by an integration to print on an invoice passes `sample=False` (see
    docs/feedback.md: it is printed, not sent, so neither sampling nor the cap is about it)."""
    if not 1 <= len(interaction) <= _INTERACTION:
        raise InvalidInput("interaction", f"1-{_INTERACTION} characters")
    if not 1 <= len(customer_id) <= 200:
        raise InvalidInput("customer", "1-200 characters")
    existing = find_request(uow, interaction)
    if existing is not None:
        return Created(existing)
    if sample:
        if not is_sampled(interaction, policy.sample_rate):
            return Created(None, skipped=Skipped.NOT_SAMPLED)
        if policy.cap_per_month and _asked(uow, customer_id, since=now - MONTH) >= policy.cap_per_month:
            return Created(None, skipped=Skipped.CAPPED)
    values = {
        "interaction": interaction,
        "customer_id": customer_id,
        "case_id": case_id,
        "event_type": event_type,
        "reference": None if reference is None else reference[:500],
        "scale": None if policy.scale is None else policy.scale.value,
        "language": language,
        "created_at": now,
        "expires_at": now + policy.ttl,
    }
    insert: Any = postgresql.insert(_requests) if uow.dialect == "postgresql" else sqlite.insert(_requests)
    row = uow.execute(
        insert.values(**values).on_conflict_do_nothing(index_elements=["interaction"]).returning(*_requests.c)
    ).first()
    if row is None:  # another process created it in between
        return Created(_request(uow.execute(sa.select(_requests).where(_requests.c.interaction == interaction)).one()))
    return Created(_request(row), new=True)


def _asked(uow: UnitOfWork, customer_id: str, *, since: datetime) -> int:
    r = _requests
    query = sa.select(sa.func.count()).select_from(r).where(r.c.customer_id == customer_id, r.c.created_at > since)
    return int(uow.execute(query).scalar_one())


def find_request(uow: UnitOfWork, interaction: str) -> FeedbackRequest | None:
    row = uow.execute(sa.select(_requests).where(_requests.c.interaction == interaction)).first()
    return None if row is None else _request(row)


def get_request(uow: UnitOfWork, request_id: int) -> FeedbackRequest:
    row = uow.execute(sa.select(_requests).where(_requests.c.id == request_id)).first()
    if row is None:
        raise NotFound(f"no feedback request {request_id}")
    return _request(row)


def request_for_link(uow: UnitOfWork, link: FeedbackLink, *, now: datetime) -> FeedbackRequest:
    """The request a checked link opens; NotFound when there is none with its id, when its id now names another
    interaction (a token made for another request, or before the database was renewed), or when it expired."""
    row = uow.execute(sa.select(_requests).where(_requests.c.id == link.request_id)).first()
    if row is None or not link.is_for(row.interaction):
        raise NotFound("no such feedback request")
    request = _request(row)
    if request.is_expired(now):
        raise NotFound("this feedback request has expired")
    return request


def send_request(uow: UnitOfWork, outreach: Outreach, request: FeedbackRequest, *, now: datetime) -> Message | None:
    """Send the request's link to the customer through outreach (proactive: the cap and quiet hours apply, an
    opt-out withholds it) and note the message on the request. None when the customer has no email or phone."""
    url = outreach.links.feedback_url(request.id, request.interaction, request.expires_at)
    message = outreach.ask_for_feedback(
        uow,
        request.customer_id,
        url=url,
        reference=request.reference,
        expires_at=request.expires_at,
        language=request.language,
        key=f"feedback-request:{request.id}",
        now=now,
        case_id=request.case_id,
    )
    if message is not None and request.message_id is None:
        uow.execute(sa.update(_requests).where(_requests.c.id == request.id).values(message_id=message.id))
    return message


def page_answer(uow: UnitOfWork, request: FeedbackRequest) -> Feedback | None:
    """What the customer answered on the request's page, if they have."""
    row = uow.execute(sa.select(_feedback).where(_feedback.c.dedup_key == request.dedup_key)).first()
    return None if row is None else feedback_from_row(row)


def edit_page_answer(
    uow: UnitOfWork,
    request: FeedbackRequest,
    *,
    liked: str | None,
    disliked: str | None,
    rating: int | None,
    now: datetime,
) -> Feedback:
    """Change the answer on a request's page while it may be changed (`editable_until`); NoLongerEditable after.
    The texts and the rating change; the desk then labels them again (`FeedbackDesk.retriage`)."""
    stored = page_answer(uow, request)
    if stored is None:
        raise NotFound(f"feedback request {request.id} has no answer to change")
    if stored.editable_until is None or stored.editable_until <= now:
        raise NoLongerEditable(f"the answer to feedback request {request.id} can no longer be changed")
    incoming = checked(page_feedback(request, liked=liked, disliked=disliked, rating=rating, received_at=now), now)
    row = uow.execute(
        sa.update(_feedback)
        .where(_feedback.c.id == stored.id)
        .values(
            liked=incoming.liked,
            disliked=incoming.disliked,
            text=incoming.full_text,
            rating=incoming.rating,
            updated_at=now,
        )
        .returning(*_feedback.c)
    ).one()
    return feedback_from_row(row)


def page_feedback(
    request: FeedbackRequest,
    *,
    liked: str | None,
    disliked: str | None,
    rating: int | None,
    received_at: datetime,
    editable_for: timedelta | None = None,
) -> FeedbackIn:
    """The feedback a request's page posts, before it is checked: one per request (`request:<id>`)."""
    return FeedbackIn(
        dedup_key=request.dedup_key,
        channel=FeedbackChannel.PAGE,
        received_at=received_at,
        customer_id=request.customer_id,
        liked=liked,
        disliked=disliked,
        rating=rating,
        scale=request.scale if rating is not None else None,
        language=request.language,
        reference=request.reference,
        request_id=request.id,
        editable_until=None if editable_for is None else received_at + editable_for,
    )


def mark_answered(uow: UnitOfWork, request: FeedbackRequest, *, now: datetime) -> None:
    uow.execute(
        sa.update(_requests)
        .where(_requests.c.id == request.id, _requests.c.answered_at.is_(None))
        .values(answered_at=now)
    )


def reference_of(data: Any) -> str | None:
    """What an event is about, in the company's words: the first value of its data under a key naming a thing
    (`order_id`, `booking_ref`, `job_id`, `invoice_no`); None if there is none."""
    if not isinstance(data, Mapping):
        return None
    for name, value in data.items():
        if (
            isinstance(name, str)
            and name.endswith(("_id", "_ref", "_no", "_number"))
            and isinstance(value, str | int)
            and not isinstance(value, bool)
            and str(value).strip()
        ):
            return str(value).strip()[:200]
    return None


def language_of(uow: UnitOfWork, outreach: Outreach, customer_id: str) -> str:
    """The language to ask the customer in: their profile's, else the default."""
    profile = customer_profile(uow, customer_id, event_types=outreach.profile_events)
    return profile.language or outreach.default_language


def _request(row: Any) -> FeedbackRequest:
    values = dict(row._mapping)
    values["scale"] = None if values["scale"] is None else Scale(values["scale"])
    return FeedbackRequest(**values)
