"""Customers' replies to our emails: each stored once, matched to the message of ours it answers, and put on that
message's case thread in the same transaction (docs/outreach.md#replies).

Matching: the reply's In-Reply-To, then its References (the latest first), against the Message-ID our email
channel gave each message it sent (`messages.provider_id`). Only that names a case. Failing it, the sender's
address is looked up among the customers' profile emails to say whose reply it is (one customer, never a guess
between two), and never which case. A reply that matches nothing is kept all the same, with no case, to be read.
A reply never changes a case's status: on a resolved or closed case it is shown, flagged by `case_status`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from amends.errors import InvalidInput, NotFound
from amends.outreach.inbound import Attachment, InboundEmail, InboundProvider
from amends.outreach.outbox import ChannelName, Message, get_message
from amends.outreach.profiles import customers_with_email
from amends.recover.actors import Actor
from amends.recover.cases import Status, customer_wrote, load_case
from amends.store import UnitOfWork, tables
from amends.store.paging import decode_cursor, encode_cursor

__all__ = ["InboundReply", "MatchedBy", "dedup_key", "get_reply", "list_replies", "record_reply"]

_replies = tables.inbound_replies
_messages = tables.messages
_MAX_LIMIT = 1000
_EXCERPT_CHARS = 200
_AFTER_RESOLUTION = (Status.RESOLVED.value, Status.CLOSED.value)


class MatchedBy(StrEnum):
    IN_REPLY_TO = "in_reply_to"  # the header names the message it answers
    REFERENCES = "references"  # the thread's list of messages names one of ours
    SENDER = "sender"  # no message of ours: the sender's address is one customer's profile email (no case)


@dataclass(frozen=True, slots=True)
class InboundReply:
    id: int
    provider: InboundProvider
    email_message_id: str | None  # the reply's own Message-ID
    message_id: int | None  # the message of ours it answers
    case_id: int | None
    customer_id: str | None
    matched_by: MatchedBy | None  # None: matched nothing
    case_status: str | None  # the case's status when the reply came: `resolved` or `closed` wants a look
    from_address: str
    subject: str
    text: str  # without the quoted original
    full_text: str | None  # the whole text, the quote included
    html: str | None
    headers: tuple[tuple[str, str], ...]
    attachments: tuple[Attachment, ...]
    received_at: datetime

    @property
    def after_resolution(self) -> bool:
        """The case was resolved or closed when the reply came (it stays so: staff read it and decide)."""
        return self.case_status in _AFTER_RESOLUTION


def dedup_key(email: InboundEmail) -> str:
    """What makes a post of the same email the same reply: the provider and the email's own Message-ID, else the
    provider's id for it (Postmark's MessageID), else a digest of what it says and who said it."""
    if email.message_id:
        kind, basis = "mid", email.message_id
    elif email.provider_id:
        kind, basis = "pid", email.provider_id
    else:
        date = next((value for name, value in email.headers if name.lower() == "date"), "")
        parts = [email.from_address.lower(), date, email.subject, email.text, email.html or ""]
        kind, basis = "sum", "\x1f".join([*parts, *email.in_reply_to, *email.references])
    digest = hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{email.provider.value}:{kind}:{digest}"


def record_reply(
    uow: UnitOfWork, email: InboundEmail, *, actor: Actor, now: datetime, profile_events: Sequence[str]
) -> tuple[InboundReply, bool]:
    """Store a customer's email in the caller's transaction (the caller commits), and return it with True when it
    is new. The same email posted again (a provider's retry) gives back the stored reply and False, and changes
    nothing else. A reply matched to a case is an inbound contact on its thread, and counts as the customer
    having spoken (`customer_spoke_at`): what the case writes to them next is an answer, not capped."""
    key = dedup_key(email)
    stored = _find(uow, key)
    if stored is not None:
        return stored, False
    message, matched_by = _answered_message(uow, email)
    customer_id = None if message is None else message.customer_id
    case = None
    if message is not None and message.case_id is not None:
        case = load_case(uow, message.case_id)
    if message is None:
        found = customers_with_email(uow, email.from_address, event_types=profile_events, limit=2)
        if len(found) == 1:
            customer_id, matched_by = found[0], MatchedBy.SENDER
    values = {
        "dedup_key": key,
        "provider": email.provider.value,
        "email_message_id": email.message_id,
        "message_id": None if message is None else message.id,
        "case_id": None if case is None else case.id,
        "customer_id": customer_id,
        "matched_by": None if matched_by is None else matched_by.value,
        "case_status": None if case is None else case.status.value,
        "from_address": email.from_address,
        "subject": email.subject,
        "text": email.reply,
        "full_text": email.text,
        "html": email.html,
        "headers": [list(pair) for pair in email.headers],
        "attachments": [{"name": a.name, "content_type": a.content_type, "size": a.size} for a in email.attachments],
        "received_at": now,
    }
    insert: Any = postgresql.insert(_replies) if uow.dialect == "postgresql" else sqlite.insert(_replies)
    row = uow.execute(
        insert.values(**values).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(*_replies.c)
    ).first()
    if row is None:  # another post of the same email was stored meanwhile
        return _reply_from_row(uow.execute(sa.select(_replies).where(_replies.c.dedup_key == key)).one()), False
    reply = _reply_from_row(row)
    if case is not None:
        customer_wrote(uow, case.id, channel="email", note=_note(reply), actor=actor, at=now, reply=reply.id)
    return reply, True


def get_reply(uow: UnitOfWork, reply_id: int) -> InboundReply:
    """The reply with this id; NotFound if there is none."""
    row = uow.execute(sa.select(_replies).where(_replies.c.id == reply_id)).first()
    if row is None:
        raise NotFound(f"no reply {reply_id}")
    return _reply_from_row(row)


def list_replies(
    uow: UnitOfWork,
    *,
    case_id: int | None = None,
    unmatched: bool = False,
    after_resolution: bool = False,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[InboundReply], str | None]:
    """One page of replies, newest first by (received_at, id), and the cursor of the next page (None on the
    last). `unmatched`: those on no case; `after_resolution`: those that came to a resolved or closed case.
    InvalidInput for a limit outside 1..1000, a cursor not from a previous page, or a case with `unmatched`."""
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {_MAX_LIMIT}, got {limit}")
    r = _replies
    query = sa.select(r)
    if unmatched:
        if case_id is not None or after_resolution:
            raise InvalidInput("unmatched", "a reply on no case has no case_id and no resolution to come after")
        query = query.where(r.c.case_id.is_(None))
    if case_id is not None:
        query = query.where(r.c.case_id == case_id)
    if after_resolution:
        query = query.where(r.c.case_status.in_(_AFTER_RESOLUTION))
    if cursor is not None:
        before_time, before_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(r.c.received_at < before_time, sa.and_(r.c.received_at == before_time, r.c.id < before_id))
        )
    rows = uow.execute(query.order_by(r.c.received_at.desc(), r.c.id.desc()).limit(limit + 1)).all()
    page = [_reply_from_row(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].received_at, page[-1].id) if len(rows) > limit else None
    return page, next_cursor


def _answered_message(uow: UnitOfWork, email: InboundEmail) -> tuple[Message | None, MatchedBy | None]:
    """The message of ours the email answers: the one its In-Reply-To names, else the latest its References do."""
    wanted = [(ref, MatchedBy.IN_REPLY_TO) for ref in email.in_reply_to]
    wanted += [(ref, MatchedBy.REFERENCES) for ref in reversed(email.references)]
    if not wanted:
        return None, None
    rows = uow.execute(
        sa.select(_messages.c.provider_id, _messages.c.id).where(
            _messages.c.provider_id.in_(sorted({ref for ref, _by in wanted})),
            _messages.c.channel == ChannelName.EMAIL.value,
        )
    ).all()
    found: dict[str, int] = {row.provider_id: row.id for row in rows}
    for ref, matched_by in wanted:
        if ref in found:
            return get_message(uow, found[ref]), matched_by
    return None, None


def _find(uow: UnitOfWork, key: str) -> InboundReply | None:
    row = uow.execute(sa.select(_replies).where(_replies.c.dedup_key == key)).first()
    return None if row is None else _reply_from_row(row)


def _note(reply: InboundReply) -> str:
    """The contact's note: which reply, and its first words."""
    words = " ".join(reply.text.split())
    if not words:
        return f"email reply {reply.id} (no text; {len(reply.attachments)} attachment(s))"
    excerpt = words if len(words) <= _EXCERPT_CHARS else words[: _EXCERPT_CHARS - 1] + "…"
    return f"email reply {reply.id}: {excerpt}"


def _reply_from_row(row: sa.Row[Any]) -> InboundReply:
    return InboundReply(
        id=row.id,
        provider=InboundProvider(row.provider),
        email_message_id=row.email_message_id,
        message_id=row.message_id,
        case_id=row.case_id,
        customer_id=row.customer_id,
        matched_by=None if row.matched_by is None else MatchedBy(row.matched_by),
        case_status=row.case_status,
        from_address=row.from_address,
        subject=row.subject,
        text=row.text,
        full_text=row.full_text,
        html=row.html,
        headers=tuple((str(name), str(value)) for name, value in row.headers),
        attachments=tuple(
            Attachment(str(a.get("name", "")), str(a.get("content_type", "")), int(a.get("size", 0)))
            for a in row.attachments or ()
        ),
        received_at=row.received_at,
    )
