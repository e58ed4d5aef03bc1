"""The outbox: every message to a customer is a row written in the caller's transaction, beside the decision that
causes it, and delivered after commit by a worker that leases the rows it claims.

Delivery is at least once, never exactly once: a worker that stops between the channel's acceptance and the
commit recording it leaves a lease that runs out, and the message goes again. Only the lease's owner records an
outcome, so a worker that lost its lease cannot overwrite the one that took over (docs/outreach-delivery.md).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from amends.errors import Conflict, InvalidInput, NotFound
from amends.store import Database, UnitOfWork, tables
from amends.store.paging import decode_cursor, encode_cursor

__all__ = [
    "Channel",
    "ChannelName",
    "Draft",
    "Message",
    "MessageKind",
    "MessageStatus",
    "Outcome",
    "Settled",
    "backoff_delay",
    "cancel_pending",
    "claim",
    "deliver_due",
    "enqueue",
    "get_message",
    "list_messages",
    "retry_dead",
    "settle",
]

log = logging.getLogger(__name__)

_messages = tables.messages
_MAX_LIMIT = 1000
_MAX_KEY_CHARS = 200
_MAX_SUBJECT_CHARS = 998  # the longest line RFC 5322 allows
_MAX_ERROR_CHARS = 2000
# Headers the channel writes itself: a draft that set one could forge the sender or break the MIME structure.
_RESERVED_HEADERS = frozenset(
    {
        "bcc",
        "cc",
        "content-transfer-encoding",
        "content-type",
        "date",
        "from",
        "message-id",
        "mime-version",
        "return-path",
        "sender",
        "subject",
        "to",
    }
)
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII but the colon (RFC 5322 §3.6.8)
_jitter = random.SystemRandom()
_E = TypeVar("_E", bound=StrEnum)


class ChannelName(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    CARD = "card"  # a hand-written card: printed, written and posted by staff
    FILE = "file"  # one JSON line per message, for development
    ALERT = "alert"  # to staff, not a customer: a signed webhook to alert_webhook_url


class MessageKind(StrEnum):
    APOLOGY = "apology"
    REMEDY = "remedy"
    FOLLOW_UP = "follow_up"
    THANK_YOU = "thank_you"
    REPLY = "reply"  # an answer in the case thread to a customer who wrote
    ALERT = "alert"  # for staff: feedback past its due time; an email that their console sign-in changed
    FEEDBACK_REQUEST = "feedback_request"  # the link to a feedback request's page (feedback/requests.py)
    OTHER = "other"


class MessageStatus(StrEnum):
    PENDING = "pending"  # waiting for its time, or being sent under a lease
    SENT = "sent"
    DEAD = "dead"  # failed for good; `last_error` says why, and `retry_dead` puts it back
    CANCELLED = "cancelled"  # never sent: `note` says why (the customer opted out, the case was reopened)


@dataclass(frozen=True, slots=True)
class Message:
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
    headers: Mapping[str, str]
    status: MessageStatus
    attempts: int
    not_before: datetime
    next_attempt_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    provider_id: str | None
    note: str | None  # what the contact policy did to it: delayed by quiet hours, not sent after an opt-out


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """A message to be sent. `key` makes it idempotent: the decision that causes it names it the same way each
    time it is made (`case:12:empathise:email`). `not_before` delays it (quiet hours); None: at once.
    `note` says why it waits; `withheld` says why it must not go at all (it is kept, cancelled, to show that)."""

    key: str
    channel: ChannelName
    kind: MessageKind
    recipient: str
    subject: str
    text: str
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    case_id: int | None = None
    customer_id: str
    not_before: datetime | None = None
    note: str | None = None
    withheld: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message on its channel. A failure is temporary (tried again later) unless `permanent`."""

    message_id: int
    ok: bool
    permanent: bool = False
    error: str | None = None
    provider_id: str | None = None


class Channel(Protocol):
    """A way to reach customers. `send` takes a batch, so a connection can serve all of it, and returns one
    outcome per message; it raises only on a bug (the worker then counts a temporary failure for the batch)."""

    name: str

    def send(self, messages: Sequence[Message]) -> list[Outcome]: ...


@dataclass(frozen=True, slots=True)
class Settled:
    """The ids of the messages a worker settled, by what became of them."""

    sent: tuple[int, ...] = ()
    retrying: tuple[int, ...] = ()
    dead: tuple[int, ...] = ()
    lost: tuple[int, ...] = ()  # not recorded: the lease had passed to another worker, or the row was settled


# --- writing ---------------------------------------------------------------------------------------------


def enqueue(uow: UnitOfWork, draft: Draft, *, now: datetime) -> tuple[Message, bool]:
    """Put a message in the outbox inside the caller's transaction (the caller commits), and return it with
    True when it is new.

    Idempotent on the draft's key: the same draft again gives back the stored message and False, whether or not
    it has been sent. A different message under a stored key is a Conflict (`not_before` may differ: it is
    when, not what). InvalidInput names a field the draft cannot be sent with.
    """
    values = _row_values(draft, now)
    insert: Any = postgresql.insert(_messages) if uow.dialect == "postgresql" else sqlite.insert(_messages)
    statement = insert.values(**values).on_conflict_do_nothing(index_elements=["key"]).returning(*_messages.c)
    row = uow.execute(statement).first()
    if row is not None:
        return _message_from_row(row), True
    stored = _message_from_row(uow.execute(sa.select(_messages).where(_messages.c.key == draft.key)).one())
    if _content(stored) != _content_of_values(values):
        raise Conflict(f"message key {draft.key!r} already holds a different message (id {stored.id})")
    return stored, False


def retry_dead(uow: UnitOfWork, message_id: int, *, now: datetime) -> Message:
    """Put a dead message back in the queue with a fresh count of attempts, due now (or at its `not_before`).
    Its last error stays until the next attempt. NotFound if there is no such message; Conflict unless dead."""
    message = get_message(uow, message_id)
    if message.status is not MessageStatus.DEAD:
        raise Conflict(f"message {message_id} is {message.status.value}; only a dead message can be retried")
    row = uow.execute(
        sa.update(_messages)
        .where(_messages.c.id == message_id, _messages.c.status == MessageStatus.DEAD.value)
        .values(
            status=MessageStatus.PENDING.value,
            attempts=0,
            next_attempt_at=max(now, message.not_before),
            lease_owner=None,
            lease_until=None,
        )
        .returning(*_messages.c)
    ).first()
    if row is None:  # another transaction retried it first
        raise Conflict(f"message {message_id} is no longer dead")
    return _message_from_row(row)


def cancel_pending(
    uow: UnitOfWork, *, case_id: int, kinds: Collection[MessageKind], note: str, now: datetime
) -> list[Message]:
    """Cancel the case's messages of these kinds that have not gone yet (a scheduled follow-up, after the case
    was reopened), saying why, and return them. A message a worker holds under a lease is going out now and is
    left alone."""
    m = _messages
    rows = uow.execute(
        sa.update(m)
        .where(
            m.c.case_id == case_id,
            m.c.kind.in_(sorted(kind.value for kind in kinds)),
            m.c.status == MessageStatus.PENDING.value,
            sa.or_(m.c.lease_until.is_(None), m.c.lease_until <= now),
        )
        .values(status=MessageStatus.CANCELLED.value, note=note, lease_owner=None, lease_until=None)
        .returning(*m.c)
    ).all()
    return [_message_from_row(row) for row in rows]


# --- reading ---------------------------------------------------------------------------------------------


def get_message(uow: UnitOfWork, message_id: int) -> Message:
    """The message with this id; NotFound if there is none."""
    row = uow.execute(sa.select(_messages).where(_messages.c.id == message_id)).first()
    if row is None:
        raise NotFound(f"no message {message_id}")
    return _message_from_row(row)


def list_messages(
    uow: UnitOfWork,
    *,
    status: MessageStatus | str | None = None,
    case_id: int | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[Message], str | None]:
    """One page of messages, newest first by (created_at, id), and the cursor of the next page (None on the
    last). `status="dead"` lists the dead letters with their last errors. InvalidInput for an unknown status, a
    limit outside 1..1000 or a cursor not from a previous page."""
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {_MAX_LIMIT}, got {limit}")
    query = sa.select(_messages)
    if status is not None:
        query = query.where(_messages.c.status == _choice(MessageStatus, status, "status").value)
    if case_id is not None:
        query = query.where(_messages.c.case_id == case_id)
    if cursor is not None:
        before_time, before_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                _messages.c.created_at < before_time,
                sa.and_(_messages.c.created_at == before_time, _messages.c.id < before_id),
            )
        )
    rows = uow.execute(query.order_by(_messages.c.created_at.desc(), _messages.c.id.desc()).limit(limit + 1)).all()
    page = [_message_from_row(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, next_cursor


# --- delivering ------------------------------------------------------------------------------------------


def claim(
    db: Database,
    *,
    worker: str,
    batch: int,
    lease: timedelta,
    now: datetime,
    channels: Collection[str] | None = None,
    max_attempts: int | None = None,
) -> list[Message]:
    """Lease up to `batch` due messages to `worker` until `now + lease`, and return them, the longest due first.

    Due: pending, its `next_attempt_at` and `not_before` passed, and no lease or one that ran out (its worker
    stopped or overran). Each claim is an attempt. Two workers never hold one row: on PostgreSQL a claim skips
    the rows another is taking (FOR UPDATE SKIP LOCKED); on SQLite the claim is one UPDATE, made under the
    database's one write lock, so the second claim sees the first one's lease. `channels` limits the claim to
    the channels the worker can send on. With `max_attempts`, a message whose lease ran out on its last allowed
    attempt is made dead instead of being claimed again: a message that stops every worker that sends it must
    not be tried for ever.
    """
    if batch < 1:
        raise InvalidInput("batch", f"must be at least 1, got {batch}")
    if lease <= timedelta(0):
        raise InvalidInput("lease", f"must be positive, got {lease}")
    m = _messages
    due = [
        m.c.status == MessageStatus.PENDING.value,
        m.c.next_attempt_at <= now,
        m.c.not_before <= now,
        sa.or_(m.c.lease_until.is_(None), m.c.lease_until <= now),
    ]
    if channels is not None:
        due.append(m.c.channel.in_(sorted(channels)))
    with db.unit_of_work(writes=True) as uow:
        if max_attempts is not None:
            _bury_abandoned(uow, due, max_attempts=max_attempts)
        # On SQLite this UPDATE is the transaction's first statement (or follows a write), so it holds the write
        # lock before it reads: no other claim can commit between its choice of rows and its lease on them.
        pick = sa.select(m.c.id).where(*due).order_by(m.c.next_attempt_at, m.c.id).limit(batch)
        pick = pick.with_for_update(skip_locked=True)  # PostgreSQL only; SQLite renders nothing
        rows = uow.execute(
            sa.update(m)
            .where(m.c.id.in_(pick.scalar_subquery()))
            .values(lease_owner=worker, lease_until=now + lease, attempts=m.c.attempts + 1)
            .returning(*m.c)
        ).all()
        uow.commit()
    return sorted((_message_from_row(row) for row in rows), key=lambda message: (message.next_attempt_at, message.id))


def _bury_abandoned(uow: UnitOfWork, due: list[sa.ColumnElement[bool]], *, max_attempts: int) -> None:
    buried = uow.execute(
        sa.update(_messages)
        .where(*due, _messages.c.lease_until.is_not(None), _messages.c.attempts >= max_attempts)
        .values(
            status=MessageStatus.DEAD.value,
            lease_owner=None,
            lease_until=None,
            last_error=f"the lease on the last attempt ({max_attempts}) ran out with no outcome recorded: its "
            "worker stopped or overran the lease; the message may or may not have gone",
        )
        .returning(_messages.c.id)
    ).all()
    if buried:
        log.warning("outbox: %d message(s) dead after their last attempt's lease ran out", len(buried))


def settle(
    db: Database,
    outcomes: Iterable[Outcome],
    *,
    worker: str,
    now: datetime,
    max_attempts: int,
    backoff_base: timedelta,
    backoff_cap: timedelta,
) -> Settled:
    """Record what became of the messages `worker` claimed, in one transaction, and release their leases.

    Sent: `sent`, with `sent_at` and the channel's id for it. A failure: `dead` with its error when it is
    permanent or was the attempt `max_attempts`; otherwise pending again after `backoff_delay`, with its error.
    Only rows still leased to `worker` change: an outcome for a row another worker took over once this one's
    lease ran out (or one settled already) is counted `lost` and changes nothing.
    """
    first: dict[int, Outcome] = {}
    for outcome in outcomes:
        first.setdefault(outcome.message_id, outcome)
    if not first:
        return Settled()
    m = _messages
    mine = [m.c.lease_owner == worker, m.c.status == MessageStatus.PENDING.value]
    sent: list[int] = []
    retrying: list[int] = []
    dead: list[int] = []
    with db.unit_of_work(writes=True) as uow:
        # A write that changes nothing comes first: it locks the rows (PostgreSQL) or takes the write lock
        # (SQLite) before anything is read, so the lease cannot change hands while the outcomes are recorded.
        rows = uow.execute(
            sa.update(m)
            .where(m.c.id.in_(sorted(first)), *mine)
            .values(lease_owner=m.c.lease_owner)
            .returning(m.c.id, m.c.attempts)
        ).all()
        held: dict[int, int] = {row.id: row.attempts for row in rows}
        # One statement per kind of outcome, run for all its rows at once (executemany): a statement built and run
        # per row was most of the time settling took.
        sent_rows: list[dict[str, Any]] = []
        dead_rows: list[dict[str, Any]] = []
        retry_rows: list[dict[str, Any]] = []
        for message_id, outcome in first.items():
            if message_id not in held:
                continue
            if outcome.ok:
                sent_rows.append({"row_id": message_id, "row_provider_id": outcome.provider_id})
                sent.append(message_id)
            elif outcome.permanent or held[message_id] >= max_attempts:
                dead_rows.append({"row_id": message_id, "row_error": _error_text(outcome)})
                dead.append(message_id)
            else:
                delay = backoff_delay(held[message_id], base=backoff_base, cap=backoff_cap, jitter=_jitter.random())
                retry_rows.append({"row_id": message_id, "row_next": now + delay, "row_error": _error_text(outcome)})
                retrying.append(message_id)
        still_mine = (
            sa.update(m).where(m.c.id == sa.bindparam("row_id"), *mine).values(lease_owner=None, lease_until=None)
        )
        error = sa.bindparam("row_error", type_=m.c.last_error.type)
        if sent_rows:
            uow.execute(
                still_mine.values(
                    status=MessageStatus.SENT.value,
                    sent_at=now,
                    provider_id=sa.bindparam("row_provider_id", type_=m.c.provider_id.type),
                ),
                sent_rows,
            )
        if dead_rows:
            uow.execute(still_mine.values(status=MessageStatus.DEAD.value, last_error=error), dead_rows)
        if retry_rows:
            next_at = sa.bindparam("row_next", type_=m.c.next_attempt_at.type)
            uow.execute(still_mine.values(next_attempt_at=next_at, last_error=error), retry_rows)
        uow.commit()
    lost = tuple(message_id for message_id in first if message_id not in held)
    if lost:
        log.warning("outbox: %s lost the lease on %d message(s) before recording them", worker, len(lost))
    return Settled(sent=tuple(sent), retrying=tuple(retrying), dead=tuple(dead), lost=lost)


def backoff_delay(attempts: int, *, base: timedelta, cap: timedelta, jitter: float) -> timedelta:
    """How long to wait after `attempts` failed attempts: `base` doubled for each attempt after the first, up to
    `cap`, then scaled by `0.5 + jitter / 2` for `jitter` in [0, 1): between half of it and all of it, so that
    messages that failed together (a server down) do not all come back together."""
    exponent = min(max(attempts, 1) - 1, 62)  # 2**62 times any base passes any cap; a bigger power only overflows
    full = min(cap.total_seconds(), base.total_seconds() * 2.0**exponent)
    return timedelta(seconds=full * (0.5 + min(max(jitter, 0.0), 1.0) / 2))


def deliver_due(
    db: Database,
    channels: Mapping[str, Channel],
    *,
    worker: str,
    now: datetime | None = None,
    batch: int,
    lease: timedelta,
    max_attempts: int,
    backoff_base: timedelta,
    backoff_cap: timedelta,
) -> Settled:
    """Deliver one batch of due messages: claim them, send each channel's share through it, settle the outcomes.

    `channels` maps a message's channel (`email`, `webhook`, ...) to what sends it; messages of other channels
    are left for a worker that has them. `worker` names this loop, and must be unique to it (the host and
    process, say). `now` is for tests; by default the clock is read when claiming and again when settling.
    """
    claimed = claim(
        db,
        worker=worker,
        batch=batch,
        lease=lease,
        now=now or _utcnow(),
        channels=list(channels),
        max_attempts=max_attempts,
    )
    if not claimed:
        return Settled()
    started = time.monotonic()
    groups: dict[str, list[Message]] = {}
    for message in claimed:
        groups.setdefault(message.channel.value, []).append(message)
    outcomes: list[Outcome] = []
    for name, group in groups.items():
        outcomes += _send(name, channels[name], group)
    elapsed = time.monotonic() - started
    if elapsed > lease.total_seconds():
        # Another worker may have claimed these messages meanwhile and sent them too.
        log.warning(
            "outbox: sending %d message(s) took %.0fs, longer than the %.0fs lease; raise the lease or lower the batch",
            len(claimed),
            elapsed,
            lease.total_seconds(),
        )
    return settle(
        db,
        outcomes,
        worker=worker,
        now=now or _utcnow(),
        max_attempts=max_attempts,
        backoff_base=backoff_base,
        backoff_cap=backoff_cap,
    )


def _send(name: str, channel: Channel, group: Sequence[Message]) -> list[Outcome]:
    try:
        results = channel.send(group)
    except Exception as exc:  # a channel's bug must not stop the worker: the batch is tried again later
        log.exception("outbox: channel %s failed on a batch of %d message(s)", name, len(group))
        error = f"{type(exc).__name__}: {exc}"
        return [Outcome(message.id, ok=False, error=error) for message in group]
    wanted = {message.id for message in group}
    given = {outcome.message_id: outcome for outcome in results if outcome.message_id in wanted}
    return [
        given.get(message.id, Outcome(message.id, ok=False, error=f"channel {name} gave no outcome"))
        for message in group
    ]


# --- rows ------------------------------------------------------------------------------------------------


def _row_values(draft: Draft, now: datetime) -> dict[str, Any]:
    if now.tzinfo is None:
        raise InvalidInput("now", "must be an aware datetime")
    key = _text(draft.key, "key", limit=_MAX_KEY_CHARS)
    channel = _choice(ChannelName, draft.channel, "channel")
    kind = _choice(MessageKind, draft.kind, "kind")
    # A card's recipient is its postal block: the name, then the address, one line each. Every other channel's
    # recipient goes into a header or a URL, where a line break could smuggle in another.
    recipient = _text(draft.recipient, "recipient", one_line=channel is not ChannelName.CARD)
    if channel is ChannelName.EMAIL and "@" not in parseaddr(recipient)[1]:
        raise InvalidInput("recipient", f"expected an email address, got {recipient!r}")
    subject = draft.subject
    if "\r" in subject or "\n" in subject or len(subject) > _MAX_SUBJECT_CHARS:
        raise InvalidInput("subject", f"must be one line of at most {_MAX_SUBJECT_CHARS} characters")
    customer_id = _text(draft.customer_id, "customer_id", limit=200)
    not_before = draft.not_before or now
    if not_before.tzinfo is None:
        raise InvalidInput("not_before", "must be an aware datetime")
    return {
        "key": key,
        "case_id": draft.case_id,
        "customer_id": customer_id,
        "channel": channel.value,
        "kind": kind.value,
        "recipient": recipient,
        "subject": subject,
        "text": _text(draft.text, "text"),
        "html": draft.html,
        "headers": _headers(draft.headers),
        "status": MessageStatus.PENDING.value if draft.withheld is None else MessageStatus.CANCELLED.value,
        "note": draft.withheld or draft.note,
        "attempts": 0,
        "not_before": not_before,
        "next_attempt_at": max(now, not_before),
        "created_at": now,
    }


def _text(value: str, name: str, *, limit: int | None = None, one_line: bool = False) -> str:
    if not value.strip():
        raise InvalidInput(name, "must not be empty")
    if limit is not None and len(value) > limit:
        raise InvalidInput(name, f"must be at most {limit} characters, got {len(value)}")
    if one_line and ("\r" in value or "\n" in value):
        raise InvalidInput(name, "must be one line")
    return value


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidInput(f"headers.{name}", "not a header name")
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidInput(f"headers.{name}", "is set by the channel")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise InvalidInput(f"headers.{name}", "must be one line of text")
        checked[name] = value
    return checked


def _choice(kind: type[_E], value: str, name: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidInput(name, f"expected one of {allowed}; got {value!r}") from None


def _content(message: Message) -> tuple[Any, ...]:
    return (
        message.case_id,
        message.customer_id,
        message.channel.value,
        message.kind.value,
        message.recipient,
        message.subject,
        message.text,
        message.html,
        dict(message.headers),
    )


def _content_of_values(values: Mapping[str, Any]) -> tuple[Any, ...]:
    names = ("case_id", "customer_id", "channel", "kind", "recipient", "subject", "text", "html", "headers")
    return tuple(values[name] for name in names)


def _error_text(outcome: Outcome) -> str:
    error = outcome.error or ("permanent failure" if outcome.permanent else "temporary failure")
    return error if len(error) <= _MAX_ERROR_CHARS else error[: _MAX_ERROR_CHARS - 1] + "…"


def _message_from_row(row: sa.Row[Any]) -> Message:
    return Message(
        id=row.id,
        key=row.key,
        case_id=row.case_id,
        customer_id=row.customer_id,
        channel=ChannelName(row.channel),
        kind=MessageKind(row.kind),
        recipient=row.recipient,
        subject=row.subject,
        text=row.text,
        html=row.html,
        headers=dict(row.headers),
        status=MessageStatus(row.status),
        attempts=row.attempts,
        not_before=row.not_before,
        next_attempt_at=row.next_attempt_at,
        lease_owner=row.lease_owner,
        lease_until=row.lease_until,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
        provider_id=row.provider_id,
        note=row.note,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)
