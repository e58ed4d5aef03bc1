"""The contact policy: when, and whether, a message we send unasked may go (docs/outreach.md#the-contact-policy).

- **Opt-out.** A customer who used the unsubscribe link (or asked staff) gets no more messages from amends.
  A message withheld for it is kept, cancelled, with the reason, so the case shows why nothing went.
- **A cap** on proactive messages per customer in a sliding window. Over it, a message waits until the window
  has room again: it is delayed, never dropped.
- **Quiet hours** in the customer's time zone (their profile's, else the default): an email or text due then
  waits for the end of them. Cards are written by staff in working hours and are not delayed.

Answers to a customer who wrote to us (a reply in the case thread) are not proactive: no cap, no quiet hours.
An opt-out stops them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from amends.durations import parse_time_span
from amends.errors import InvalidInput
from amends.outreach.outbox import ChannelName, MessageKind, MessageStatus
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.store import UnitOfWork, tables

__all__ = ["ContactPolicy", "OptOut", "QuietHours", "Timing", "opt_in", "opt_out", "opt_out_of", "opted_out_at"]

_messages = tables.messages
_opt_outs = tables.opt_outs
_NOT_COUNTED = (MessageKind.REPLY.value, MessageKind.ALERT.value)  # answers, and alerts to staff
_SOURCES = ("link", "staff", "api")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily span of local time with no messages; it may run past midnight (21:00-08:00)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """`HH:MM-HH:MM`; InvalidInput naming `quiet_hours` otherwise."""
        try:
            return cls(*parse_time_span(text))
        except ValueError as exc:
            raise InvalidInput("quiet_hours", str(exc)) from None

    def covers(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def after(self, at: datetime, zone: ZoneInfo) -> datetime:
        """`at` itself outside quiet hours, else the first moment after them, in `zone`."""
        local = at.astimezone(zone)
        if not self.covers(local.time().replace(tzinfo=None)):
            return at
        day = local.date() if local.time() < self.end else local.date() + timedelta(days=1)
        # A wall time that falls in a DST gap or fold resolves to a real instant through UTC.
        return datetime.combine(day, self.end, tzinfo=zone).astimezone(at.tzinfo)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class Timing:
    """When a message may go: `not_before` (None: at once), with why it waits; or `withheld`: not at all."""

    not_before: datetime | None = None
    note: str | None = None
    withheld: str | None = None


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    cap: int  # proactive messages per customer per `window`; 0: no cap
    window: timedelta
    quiet: QuietHours | None
    default_timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.cap < 0:
            raise InvalidInput("contact_cap", f"must be 0 (no cap) or more, got {self.cap}")
        if self.window <= timedelta(0):
            raise InvalidInput("contact_window", "must be positive")
        _zone(self.default_timezone, "default_timezone")

    def timing(
        self,
        uow: UnitOfWork,
        customer_id: str,
        *,
        channel: ChannelName,
        proactive: bool,
        timezone: str | None,
        at: datetime,
    ) -> Timing:
        """When a message to the customer, due at `at`, may go under the policy."""
        if (since := opted_out_at(uow, customer_id)) is not None:
            return Timing(withheld=f"not sent: the customer opted out of our messages on {since:%Y-%m-%d}")
        if not proactive:
            return Timing()
        zone = _zone(timezone or self.default_timezone, "timezone")
        notes: list[str] = []
        when = at
        for _ in range(8):  # each pass can only move later; a few settle any real schedule
            moved = when
            if self.cap:
                capped = self._room(uow, customer_id, moved)
                if capped > moved:
                    notes.append(f"delayed by the cap of {self.cap} messages in {_span(self.window)}")
                    moved = capped
            if self.quiet is not None and channel is not ChannelName.CARD:
                quiet = self.quiet.after(moved, zone)
                if quiet > moved:
                    notes.append(f"delayed by quiet hours ({self.quiet}, {zone.key})")
                    moved = quiet
            if moved == when:
                break
            when = moved
        if when == at:
            return Timing()
        return Timing(not_before=when, note="; ".join(dict.fromkeys(notes)))

    def _room(self, uow: UnitOfWork, customer_id: str, at: datetime) -> datetime:
        """The first moment from `at` on when fewer than `cap` of the customer's proactive messages fall in the
        window that ends there."""
        times = _scheduled(uow, customer_id, since=at - self.window)
        while len([t for t in times if at - self.window < t <= at]) >= self.cap:
            inside = sorted(t for t in times if at - self.window < t <= at)
            at = inside[len(inside) - self.cap] + self.window
        return at


def _scheduled(uow: UnitOfWork, customer_id: str, *, since: datetime) -> Sequence[datetime]:
    """When the customer's proactive messages (sent, or waiting to go) are or were due, from `since` on."""
    m = _messages
    return list(
        uow.execute(
            sa.select(m.c.not_before).where(
                m.c.customer_id == customer_id,
                m.c.status.in_([MessageStatus.PENDING.value, MessageStatus.SENT.value]),
                m.c.kind.not_in(_NOT_COUNTED),
                m.c.not_before > since,
            )
        ).scalars()
    )


# --- opting out ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OptOut:
    at: datetime  # the first time they asked
    source: str  # link (the unsubscribe link), staff (on their behalf) or api (another system of the company's)


def opt_out_of(uow: UnitOfWork, customer_id: str) -> OptOut | None:
    """The customer's opt-out, if they have opted out (and not opted in again)."""
    row = uow.execute(
        sa.select(_opt_outs.c.at, _opt_outs.c.source).where(_opt_outs.c.customer_id == customer_id)
    ).first()
    return None if row is None else OptOut(row.at, row.source)


def opted_out_at(uow: UnitOfWork, customer_id: str) -> datetime | None:
    """When the customer opted out of our messages; None if they have not (or opted in again)."""
    at: datetime | None = uow.execute(
        sa.select(_opt_outs.c.at).where(_opt_outs.c.customer_id == customer_id)
    ).scalar_one_or_none()
    return at


def opt_out(uow: UnitOfWork, customer_id: str, *, source: str, actor: Actor, now: datetime) -> bool:
    """Stop every message to the customer from now on, and cancel those waiting to go. True if this is new;
    asking again changes nothing (the first time is kept)."""
    if source not in _SOURCES:
        raise InvalidInput("source", f"expected one of {', '.join(_SOURCES)}; got {source!r}")
    insert = postgresql.insert(_opt_outs) if uow.dialect == "postgresql" else sqlite.insert(_opt_outs)
    row = uow.execute(
        insert.values(customer_id=customer_id, at=now, source=source)
        .on_conflict_do_nothing(index_elements=["customer_id"])
        .returning(_opt_outs.c.customer_id)
    ).first()
    if row is None:
        return False
    m = _messages
    cancelled = uow.execute(
        sa.update(m)
        .where(
            m.c.customer_id == customer_id,
            m.c.status == MessageStatus.PENDING.value,
            m.c.kind != MessageKind.ALERT.value,  # staff alerts about them still go to staff
            sa.or_(m.c.lease_until.is_(None), m.c.lease_until <= now),
        )
        .values(status=MessageStatus.CANCELLED.value, note="not sent: the customer opted out of our messages")
        .returning(m.c.id)
    ).all()
    audit(uow, actor, "customer.opted_out", f"customer:{customer_id}", at=now, source=source, cancelled=len(cancelled))
    return True


def opt_in(uow: UnitOfWork, customer_id: str, *, actor: Actor, now: datetime) -> bool:
    """Undo an opt-out (the customer asked us to write again). True if they had opted out. Messages cancelled
    by the opt-out stay cancelled."""
    gone = uow.execute(sa.delete(_opt_outs).where(_opt_outs.c.customer_id == customer_id)).rowcount
    if gone:
        audit(uow, actor, "customer.opted_in", f"customer:{customer_id}", at=now)
    return bool(gone)


def _zone(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(field, f"{name!r} is not a time zone the tz database knows (e.g. Europe/Berlin)") from None


def _span(window: timedelta) -> str:
    days, seconds = window.days, window.seconds
    if seconds == 0:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = window.total_seconds() / 3600
    return f"{hours:g} hours"
