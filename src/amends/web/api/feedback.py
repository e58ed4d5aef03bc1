"""/v1/feedback: what customers wrote, triaged and routed; the unanswered queue; answers and triage corrections.
/v1/suggestions: what customers proposed, tracked to its outcome ("you said, we did")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from amends.access import Scope
from amends.errors import InvalidInput
from amends.feedback.measures import response_measures
from amends.feedback.records import Feedback, FeedbackChannel, FeedbackIn, Route, Scale, get_feedback, list_feedback
from amends.feedback.suggestions import (
    Suggestion,
    SuggestionStatus,
    list_suggestions,
    merge_suggestions,
    move_suggestion,
)
from amends.recover.actors import Actor
from amends.store import UnitOfWork, tables
from amends.web.api._inputs import BodyId, BodyInt, Id, Instant
from amends.web.deps import DB, FeedbackState, in_transaction, reading, require
from amends.web.errors import RECOVERY_ERRORS

__all__ = ["router", "suggestions_router"]

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])
suggestions_router = APIRouter(prefix="/v1/suggestions", tags=["feedback"])
_Poster = Annotated[Actor, Depends(require(Scope.FEEDBACK_WRITE))]
_Reader = Annotated[Actor, Depends(require(Scope.FEEDBACK_READ))]
_Answerer = Annotated[Actor, Depends(require(Scope.FEEDBACK_ANSWER))]
_Mover = Annotated[Actor, Depends(require(Scope.SUGGESTIONS_WRITE))]
_POSTED = (FeedbackChannel.EMAIL, FeedbackChannel.WEB_COMMENT, FeedbackChannel.REVIEW, FeedbackChannel.PHONE)


class FeedbackPost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=100, description="Where it came from: a mailbox, a review site.")
    id: str = Field(min_length=1, max_length=190, description="Its id there; the same (source, id) is one feedback.")
    channel: str = Field(description="email, web_comment, review or phone (a note of a call).")
    customer: str | None = Field(default=None, min_length=1, max_length=200)
    author: str | None = Field(default=None, max_length=1000, description="The name the source gives, if any.")
    text: str | None = Field(default=None, max_length=1_000_000, description="Cut at 10,000 characters, marked.")
    liked: str | None = Field(default=None, max_length=1_000_000)
    disliked: str | None = Field(default=None, max_length=1_000_000)
    rating: BodyInt | None = None
    scale: Scale | None = None
    language: str | None = Field(default=None, max_length=35)
    reference: str | None = Field(default=None, max_length=1000, description="What it is about: an order, a job.")
    received_at: Instant | None = Field(default=None, description="Default: now.")


class TriageOut(BaseModel):
    spam: bool
    spam_score: float
    sentiment: str
    sentiment_score: float
    topic: str | None
    urgency: str
    reasons: dict[str, Any] = Field(description="Per label, the words or features that drove it.")
    model: str


class ResponseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    by_id: str | None
    channel: str
    text: str
    message_id: int | None
    at: datetime


class FeedbackOut(BaseModel):
    id: int
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
    triage: TriageOut
    route: Route = Field(description="case, suggestion, praise, spam (quarantined) or none.")
    case_id: int | None
    suggestion_id: int | None
    staff_id: str | None = Field(description="The staff member praise names.")
    due_at: datetime | None = Field(description="When it must be answered; null for spam.")
    responded_at: datetime | None
    overdue: bool
    responses: list[ResponseOut] | None = Field(default=None, description="In the detail only.")


class FeedbackPage(BaseModel):
    feedback: list[FeedbackOut]
    next_cursor: str | None
    next: str | None


class ResponsePost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=20_000)
    channel: str | None = Field(
        default=None,
        description="email, sms or card (sent through outreach; default: what the customer can receive), or "
        "phone, in_person, public (an answer given elsewhere, recorded).",
    )


class CorrectionPost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(description="spam, sentiment, topic or urgency.")
    value: str = Field(max_length=50)


def _out(feedback: Feedback, now: datetime, responses: list[ResponseOut] | None = None) -> FeedbackOut:
    return FeedbackOut(
        id=feedback.id,
        customer_id=feedback.customer_id,
        author=feedback.author,
        channel=feedback.channel,
        liked=feedback.liked,
        disliked=feedback.disliked,
        text=feedback.text,
        rating=feedback.rating,
        scale=feedback.scale,
        language=feedback.language,
        reference=feedback.reference,
        received_at=feedback.received_at,
        triage=TriageOut(
            spam=feedback.spam,
            spam_score=feedback.spam_score,
            sentiment=feedback.sentiment,
            sentiment_score=feedback.sentiment_score,
            topic=feedback.topic,
            urgency=feedback.urgency,
            reasons=dict(feedback.reasons),
            model=feedback.model,
        ),
        route=feedback.route,
        case_id=feedback.case_id,
        suggestion_id=feedback.suggestion_id,
        staff_id=feedback.staff_id,
        due_at=feedback.due_at,
        responded_at=feedback.responded_at,
        overdue=feedback.overdue(now),
        responses=responses,
    )


@router.post("", response_model=FeedbackOut, status_code=201, responses=RECOVERY_ERRORS)
async def post_feedback(
    body: FeedbackPost, response: Response, db: DB, desk: FeedbackState, actor: _Poster
) -> FeedbackOut:
    """Feedback from elsewhere: an email, a comment on the website, a review, a note of a call. It is triaged
    and routed at once. 201 when new; the same (source, id) again answers 200 with what is stored."""
    channel = next((c for c in _POSTED if c.value == body.channel), None)
    if channel is None:
        raise InvalidInput("channel", f"one of {', '.join(c.value for c in _POSTED)}; got {body.channel!r}")
    now = datetime.now(UTC)
    incoming = FeedbackIn(
        dedup_key=f"{body.source}|{body.id}",
        channel=channel,
        received_at=body.received_at or now,
        customer_id=body.customer,
        author=body.author,
        text=body.text,
        liked=body.liked,
        disliked=body.disliked,
        rating=body.rating,
        scale=body.scale,
        language=body.language,
        reference=body.reference,
    )
    feedback, new = await in_transaction(db, lambda uow: desk.receive(uow, incoming, actor=actor, now=now))
    if not new:
        response.status_code = 200
    return _out(feedback, now)


@router.get("", response_model=FeedbackPage, responses=RECOVERY_ERRORS)
async def read_feedback(
    request: Request,
    db: DB,
    _actor: _Reader,
    unanswered: Annotated[bool, Query(description="What waits for an answer, the earliest due first.")] = False,
    route: Annotated[Route | None, Query(description="`spam`: the quarantine.")] = None,
    channel: Annotated[FeedbackChannel | None, Query()] = None,
    customer: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> FeedbackPage:
    """Feedback, newest first; or the unanswered queue, by due time."""
    page, next_cursor = await reading(
        db,
        lambda uow: list_feedback(
            uow,
            unanswered=unanswered,
            route=route,
            channel=channel,
            customer_id=customer,
            limit=limit,
            cursor=cursor,
        ),
    )
    now = datetime.now(UTC)
    following = None if next_cursor is None else str(request.url.include_query_params(cursor=next_cursor, limit=limit))
    return FeedbackPage(feedback=[_out(f, now) for f in page], next_cursor=next_cursor, next=following)


class MeasuresOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    week: str = Field(description="The ISO week of arrival, e.g. 2026-W47.")
    channel: str
    received: int = Field(description="Feedback needing an answer (spam left out).")
    answered: int
    response_rate: float | None
    median_hours: float | None = Field(description="Time to respond, of those answered.")
    p90_hours: float | None
    within_sla: float | None = Field(description="Answered by its due time, of those answered or past due.")
    overdue: int = Field(description="Not answered and past due now.")


@router.get("/measures", response_model=list[MeasuresOut], responses=RECOVERY_ERRORS)
async def read_measures(
    db: DB,
    _actor: _Reader,
    since: Annotated[Instant | None, Query(description="Default: eight weeks ago.")] = None,
    until: Annotated[Instant | None, Query(description="Default: now.")] = None,
) -> list[MeasuresOut]:
    """Response rate, median and 90th-percentile time to respond, share within the SLA: per channel, per week."""
    now = datetime.now(UTC)
    start = since or now - timedelta(weeks=8)
    end = until or now
    found = await reading(db, lambda uow: response_measures(uow, since=start, until=end, now=now))
    return [MeasuresOut.model_validate(m) for m in found]


@router.get("/{feedback_id}", response_model=FeedbackOut, responses=RECOVERY_ERRORS)
async def read_one(feedback_id: Id, db: DB, _actor: _Reader) -> FeedbackOut:
    """One feedback with its answers."""
    return await reading(db, lambda uow: _detail(uow, feedback_id))


def _detail(uow: UnitOfWork, feedback_id: int) -> FeedbackOut:
    feedback = get_feedback(uow, feedback_id)
    r = tables.feedback_responses
    rows = uow.execute(r.select().where(r.c.feedback_id == feedback_id).order_by(r.c.at, r.c.id))
    return _out(feedback, datetime.now(UTC), [ResponseOut.model_validate(row) for row in rows])


@router.post("/{feedback_id}/responses", response_model=FeedbackOut, responses=RECOVERY_ERRORS)
async def respond(feedback_id: Id, body: ResponsePost, db: DB, desk: FeedbackState, actor: _Answerer) -> FeedbackOut:
    """Answer it: sent through outreach (email, a text, a card), or recorded when given by phone, in person or
    publicly. 409 for spam (release it first)."""
    now = datetime.now(UTC)

    def run(uow: UnitOfWork) -> FeedbackOut:
        desk.respond(uow, feedback_id, text=body.text, channel=body.channel, actor=actor, now=now)
        return _detail(uow, feedback_id)

    return await in_transaction(db, run)


@router.post("/{feedback_id}/corrections", response_model=FeedbackOut, responses=RECOVERY_ERRORS)
async def correct(feedback_id: Id, body: CorrectionPost, db: DB, desk: FeedbackState, actor: _Answerer) -> FeedbackOut:
    """Correct a triage label (kept for training). `spam` `false` releases quarantined feedback and routes it;
    `true` quarantines it."""
    now = datetime.now(UTC)

    def run(uow: UnitOfWork) -> FeedbackOut:
        desk.correct(uow, feedback_id, field=body.field, value=body.value, actor=actor, now=now)
        return _detail(uow, feedback_id)

    return await in_transaction(db, run)


# --- suggestions -----------------------------------------------------------------------------------------


class SuggestionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    status: SuggestionStatus
    note: str | None = Field(description="What was done, or why not: what the customers who asked are told.")
    askers: int = Field(description="How many feedbacks asked for it.")
    notified: int = Field(description="How many of them have been told of the outcome.")
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None


class SuggestionsOut(BaseModel):
    suggestions: list[SuggestionOut]


class SuggestionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: SuggestionStatus
    note: str | None = Field(default=None, max_length=5000)
    title: str | None = Field(default=None, min_length=1, max_length=500)


class MergePost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into: BodyId = Field(description="The suggestion that keeps the askers of this one.")


def _suggestion_out(suggestion: Suggestion) -> SuggestionOut:
    return SuggestionOut.model_validate(suggestion)


@suggestions_router.get("", response_model=SuggestionsOut, responses=RECOVERY_ERRORS)
async def read_suggestions(
    db: DB,
    _actor: _Reader,
    status: Annotated[SuggestionStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SuggestionsOut:
    """The tracker: suggestions by how many asked, then the latest."""
    found = await reading(db, lambda uow: list_suggestions(uow, status=status, limit=limit))
    return SuggestionsOut(suggestions=[_suggestion_out(s) for s in found])


@suggestions_router.patch("/{suggestion_id}", response_model=SuggestionOut, responses=RECOVERY_ERRORS)
async def patch_suggestion(
    suggestion_id: Id, body: SuggestionPatch, db: DB, desk: FeedbackState, actor: _Mover
) -> SuggestionOut:
    """Move it along: new, planned, done, declined. Done: every customer who asked is told (the note says what
    was done), once."""
    now = datetime.now(UTC)

    def run(uow: UnitOfWork) -> Suggestion:
        return move_suggestion(
            uow, suggestion_id, status=body.status, note=body.note, title=body.title, desk=desk, actor=actor, now=now
        )

    return _suggestion_out(await in_transaction(db, run))


@suggestions_router.post("/{suggestion_id}/merge", response_model=SuggestionOut, responses=RECOVERY_ERRORS)
async def merge(suggestion_id: Id, body: MergePost, db: DB, desk: FeedbackState, actor: _Mover) -> SuggestionOut:
    """The same idea twice: its askers join `into`, and this one is declined as a duplicate."""
    now = datetime.now(UTC)

    def run(uow: UnitOfWork) -> Suggestion:
        return merge_suggestions(uow, suggestion_id, into=body.into, desk=desk, actor=actor, now=now)

    return _suggestion_out(await in_transaction(db, run))
