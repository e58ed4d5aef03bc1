"""/v1/inbound: customers' replies to our emails. Inbound-mail providers post each email to
`/v1/inbound/email/{provider}` with a key holding `inbound:write` (as a Bearer token, or as the password of the
webhook URL's Basic credentials); staff with `messages:read` list and read what came (docs/outreach.md#replies)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from amends.access import Scope
from amends.feedback.records import FeedbackChannel, FeedbackIn
from amends.outreach.inbound import ACCEPTED_MEDIA, InboundProvider, parse_inbound
from amends.outreach.replies import InboundReply, MatchedBy, get_reply, list_replies, record_reply
from amends.recover.actors import Actor
from amends.store import UnitOfWork
from amends.web.api._inputs import Id
from amends.web.deps import (
    DB,
    AppSettings,
    FeedbackState,
    OutreachState,
    in_transaction,
    read_body,
    reading,
    require,
)
from amends.web.errors import UnsupportedMediaType

__all__ = ["CaseReplyOut", "router"]

router = APIRouter(prefix="/v1/inbound", tags=["inbound"])
_Poster = Annotated[Actor, Depends(require(Scope.INBOUND_WRITE, basic=True))]
_Reader = Annotated[Actor, Depends(require(Scope.MESSAGES_READ))]


class CaseReplyOut(BaseModel):
    """A reply as the case shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    received_at: datetime
    from_address: str
    subject: str
    text: str = Field(description="The reply without the quoted original.")
    message_id: int | None = Field(description="The message of ours it answers.")
    matched_by: MatchedBy | None
    case_status: str | None = Field(description="The case's status when it came: resolved or closed wants a look.")
    after_resolution: bool = Field(description="It came after the case was resolved (the case stays as it was).")


class AttachmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    content_type: str
    size: int


class ReplyOut(CaseReplyOut):
    provider: InboundProvider
    email_message_id: str | None = Field(description="The reply's own Message-ID.")
    case_id: int | None = Field(description="Null: it matched no message of ours (see `matched_by`).")
    customer_id: str | None = Field(
        description="Whose reply: the customer of the message it answers, else the one whose profile email sent it."
    )
    full_text: str | None = Field(description="The whole text, the quoted original included.")
    html: str | None
    headers: list[tuple[str, str]]
    attachments: list[AttachmentOut] = Field(description="Named and measured; not kept (the provider keeps them).")


class RepliesOut(BaseModel):
    replies: list[ReplyOut]
    next_cursor: str | None
    next: str | None


class ReceiptOut(BaseModel):
    """What became of a posted email."""

    id: int = Field(description="The stored reply.")
    duplicate: bool = Field(description="The same email was posted before; nothing changed.")
    case_id: int | None = Field(description="The case whose thread it landed on; null: none.")
    message_id: int | None = Field(description="The message of ours it answers; null: none found.")
    customer_id: str | None
    matched_by: MatchedBy | None
    case_status: str | None = Field(description="The case's status when it came.")
    feedback_id: int | None = Field(
        default=None, description="The reply as feedback: triaged, routed and due for an answer (null: no text)."
    )


_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The email as the provider posts it: Postmark's inbound JSON, a Mailgun route's form, "
        "SendGrid's Inbound Parse form, or the message itself (message/rfc822).",
        "content": {
            "application/json": {"schema": {"type": "object", "description": "Postmark"}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object", "description": "Mailgun"}},
            "multipart/form-data": {"schema": {"type": "object", "description": "Mailgun, SendGrid"}},
            "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _now() -> datetime:
    return datetime.now(UTC)


@router.post(
    "/email/{provider}",
    response_model=ReceiptOut,
    openapi_extra=_REQUEST_BODY,
    summary="Receive a customer's email",
    responses={
        401: {"description": "No key, or one that is not valid: as a Bearer token or a Basic password."},
        403: {"description": "The key lacks `inbound:write`."},
        413: {"description": "A body over `inbound_max_body_bytes`."},
        415: {"description": "A media type the provider does not post."},
        422: {"description": "A field is missing or garbled; the body names it."},
    },
)
async def post_email(
    provider: InboundProvider,
    request: Request,
    db: DB,
    settings: AppSettings,
    outreach: OutreachState,
    desk: FeedbackState,
    actor: _Poster,
) -> ReceiptOut:
    """Store a customer's email: matched to the message of ours it answers (In-Reply-To, then References), it
    lands on that case's thread. Always 200 once stored, also for a repeat (`duplicate`) and for an email that
    matches nothing (kept with no case), since providers retry anything else."""
    content_type = request.headers.get("content-type", "")
    media = content_type.partition(";")[0].strip().lower()
    if media not in ACCEPTED_MEDIA[provider]:
        allowed = ", ".join(ACCEPTED_MEDIA[provider])
        raise UnsupportedMediaType("Content-Type", f"{media or 'none'} is not what {provider} posts; send {allowed}")
    body = await read_body(request, settings.inbound_max_body_bytes)
    email = await run_in_threadpool(parse_inbound, provider, body, content_type)
    events = outreach.profile_events

    def run(uow: UnitOfWork) -> tuple[InboundReply, bool, int | None]:
        now = _now()
        reply, new = record_reply(uow, email, actor=actor, now=now, profile_events=events)
        # A reply is feedback too: triaged, routed, and due for an answer like everything customers write.
        incoming = FeedbackIn(
            dedup_key=f"reply:{reply.id}",
            channel=FeedbackChannel.REPLY,
            received_at=min(reply.received_at, now),
            customer_id=reply.customer_id,
            author=reply.from_address,
            text=reply.text or reply.subject or None,
        )
        feedback_id = None
        if incoming.text:
            feedback, _ = desk.receive(uow, incoming, actor=actor, now=now)
            feedback_id = feedback.id
        return reply, new, feedback_id

    reply, new, feedback_id = await in_transaction(db, run)
    return ReceiptOut(
        id=reply.id,
        duplicate=not new,
        case_id=reply.case_id,
        message_id=reply.message_id,
        customer_id=reply.customer_id,
        matched_by=reply.matched_by,
        case_status=reply.case_status,
        feedback_id=feedback_id,
    )


@router.get("", response_model=RepliesOut)
async def read_replies(
    request: Request,
    db: DB,
    _actor: _Reader,
    case_id: Annotated[Id | None, Query()] = None,
    unmatched: Annotated[bool, Query(description="Only replies that reached no case.")] = False,
    after_resolution: Annotated[
        bool, Query(description="Only replies that came to a resolved or closed case.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> RepliesOut:
    """Customers' replies, newest first."""

    def run(uow: UnitOfWork) -> tuple[list[InboundReply], str | None]:
        return list_replies(
            uow, case_id=case_id, unmatched=unmatched, after_resolution=after_resolution, limit=limit, cursor=cursor
        )

    page, next_cursor = await reading(db, run)
    following = None if next_cursor is None else str(request.url.include_query_params(cursor=next_cursor, limit=limit))
    return RepliesOut(replies=[ReplyOut.model_validate(r) for r in page], next_cursor=next_cursor, next=following)


@router.get("/{reply_id}", response_model=ReplyOut, responses={404: {"description": "No such reply."}})
async def read_reply(reply_id: Id, db: DB, _actor: _Reader) -> ReplyOut:
    """One reply, with its whole text, HTML and headers."""
    return ReplyOut.model_validate(await reading(db, lambda uow: get_reply(uow, reply_id)))
