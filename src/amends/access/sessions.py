"""Console sessions: a random token in a cookie, only its SHA-256 in the database, and a CSRF token that every
form of the session carries back. A session ends at logout, after `idle` without a request, at its absolute
expiry, or when its person's password changes or they are deactivated (`end_sessions_of`). Looking a session up
only reads; its last use is written at most once a minute (`keep_session`).

A new session is made at every login and never taken over from the request (no session fixation). Lookups
compare hashes in the database's index, so nothing is compared character by character in Python.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from amends.store import UnitOfWork, tables

__all__ = [
    "Session", "end_session", "end_session_of_token", "end_sessions_of", "find_session", "keep_session",
    "needs_keeping", "start_session", "valid_csrf",
]  # fmt: skip

_sessions = tables.console_sessions
_TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often, not on every request


@dataclass(frozen=True, slots=True)
class Session:
    id: str  # the token's hash
    staff_id: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    uow: UnitOfWork, staff_id: str, *, now: datetime, lifetime: timedelta, origin: str | None
) -> tuple[Session, str]:
    """A new session for `staff_id`, and the token for its cookie (shown this once)."""
    # Sessions of this person that have run out are removed here: lookups only read.
    uow.execute(sa.delete(_sessions).where(_sessions.c.staff_id == staff_id, _sessions.c.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session = Session(_hash(token), staff_id, secrets.token_urlsafe(32), now, now, now + lifetime)
    uow.execute(
        sa.insert(_sessions).values(
            id=session.id,
            staff_id=staff_id,
            csrf_token=session.csrf_token,
            created_at=now,
            last_seen_at=now,
            expires_at=session.expires_at,
            origin=origin[:100] if origin else None,
        )
    )
    return session, token


def find_session(uow: UnitOfWork, token: str | None, *, now: datetime, idle: timedelta) -> Session | None:
    """The live session the token opens; None for no token, an unknown one, or a session that has expired or idled
    out. Reads only: `needs_keeping` says when the caller should `keep_session` in a writing unit of work."""
    if not token or len(token) > 100:
        return None
    row = uow.execute(sa.select(_sessions).where(_sessions.c.id == _hash(token))).first()
    if row is None:
        return None
    session = Session(row.id, row.staff_id, row.csrf_token, row.created_at, row.last_seen_at, row.expires_at)
    return None if _ended(session, now, idle) else session


def needs_keeping(session: Session, *, now: datetime) -> bool:
    """Whether its last use is due to be recorded (at most once a minute, so most requests only read)."""
    return now - session.last_seen_at >= _TOUCH_EVERY


def keep_session(uow: UnitOfWork, token: str, *, now: datetime, idle: timedelta) -> None:
    """Record the session's use now, or remove it if it has ended meanwhile."""
    session_id = _hash(token)
    row = uow.execute(sa.select(_sessions).where(_sessions.c.id == session_id)).first()
    if row is None:
        return
    session = Session(row.id, row.staff_id, row.csrf_token, row.created_at, row.last_seen_at, row.expires_at)
    if _ended(session, now, idle):
        uow.execute(sa.delete(_sessions).where(_sessions.c.id == session_id))
    else:
        uow.execute(sa.update(_sessions).where(_sessions.c.id == session_id).values(last_seen_at=now))


def _ended(session: Session, now: datetime, idle: timedelta) -> bool:
    return now >= session.expires_at or now - session.last_seen_at >= idle


def valid_csrf(session: Session, presented: str | None) -> bool:
    """Whether a form's CSRF token is the session's (compared in constant time)."""
    return presented is not None and hmac.compare_digest(session.csrf_token.encode(), presented.encode())


def end_session(uow: UnitOfWork, session_id: str) -> None:
    uow.execute(sa.delete(_sessions).where(_sessions.c.id == session_id))


def end_session_of_token(uow: UnitOfWork, token: str) -> None:
    """End the session a cookie's token opens, if any."""
    if token and len(token) <= 100:
        uow.execute(sa.delete(_sessions).where(_sessions.c.id == _hash(token)))


def end_sessions_of(uow: UnitOfWork, staff_id: str) -> int:
    """End every session of one person (a password change, a deactivation); how many there were."""
    return uow.execute(sa.delete(_sessions).where(_sessions.c.staff_id == staff_id)).rowcount or 0
