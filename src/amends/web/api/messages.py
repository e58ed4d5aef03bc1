"""/v1/messages: the outbox, every message to a customer with what became of it, the dead letters with their
last error, and putting a dead letter back in the queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from amends.access import Scope
from amends.outreach.outbox import (
    ChannelName,
    Message,
    MessageKind,
    MessageStatus,
    get_message,
    list_messages,
    retry_dead,
)
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.store import UnitOfWork
from amends.web.api._inputs import Id
from amends.web.deps import DB, in_transaction, reading, require
from amends.web.errors import RECOVERY_ERRORS

__all__ = ["MessageOut", "router"]

router = APIRouter(prefix="/v1/messages", tags=["messages"])
_Reader = Annotated[Actor, Depends(require(Scope.MESSAGES_READ))]
_Writer = Annotated[Actor, Depends(require(Scope.MESSAGES_WRITE))]


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    case_id: int | None
    customer_id: str
    channel: ChannelName
    kind: MessageKind
    recipient: str
    subject: str
    text: str
    html: str | None
    status: MessageStatus = Field(description="pending (waiting, or being sent), sent, dead, or cancelled.")
    attempts: int
    not_before: datetime = Field(description="Not sent before this: quiet hours, the cap, a scheduled step.")
    next_attempt_at: datetime
    last_error: str | None = Field(description="Why the last attempt failed; a dead letter's reason.")
    note: str | None = Field(description="What the contact policy did: why it waits, or why it was not sent.")
    created_at: datetime
    sent_at: datetime | None
    provider_id: str | None = Field(description="The channel's id for it: the email's Message-ID.")


class MessagesOut(BaseModel):
    messages: list[MessageOut]
    next_cursor: str | None
    next: str | None


@router.get("", response_model=MessagesOut, responses=RECOVERY_ERRORS)
async def read_messages(
    request: Request,
    db: DB,
    _actor: _Reader,
    status: Annotated[MessageStatus | None, Query(description="`dead`: the dead letters.")] = None,
    case_id: Annotated[Id | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> MessagesOut:
    """Messages newest first, by status and case."""
    page, next_cursor = await reading(
        db, lambda uow: list_messages(uow, status=status, case_id=case_id, limit=limit, cursor=cursor)
    )
    following = None if next_cursor is None else str(request.url.include_query_params(cursor=next_cursor, limit=limit))
    return MessagesOut(messages=[MessageOut.model_validate(m) for m in page], next_cursor=next_cursor, next=following)


@router.get("/{message_id}", response_model=MessageOut, responses=RECOVERY_ERRORS)
async def read_message(message_id: Id, db: DB, _actor: _Reader) -> MessageOut:
    return MessageOut.model_validate(await reading(db, lambda uow: get_message(uow, message_id)))


@router.post("/{message_id}/retry", response_model=MessageOut, responses=RECOVERY_ERRORS)
async def post_retry(message_id: Id, db: DB, actor: _Writer) -> MessageOut:
    """Put a dead letter back in the queue, with a fresh count of attempts (409 unless it is dead)."""

    def run(uow: UnitOfWork) -> Message:
        now = datetime.now(UTC)
        message = retry_dead(uow, message_id, now=now)
        audit(uow, actor, "message.retried", f"message:{message_id}", at=now)
        return message

    return MessageOut.model_validate(await in_transaction(db, run))
