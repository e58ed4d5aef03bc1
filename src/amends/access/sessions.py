"""Console sessions: a random token in a cookie, only its SHA-256 in the database, and a CSRF token that every
form of the session carries back. A session ends at logout, after `idle` without a request, at its absolute
expiry, when its person ends it from another of their sessions (`end_session_of_person`), or when its person's
password changes or they are deactivated (`end_sessions_of`). Looking a session up only reads; its last use is
written at most once a minute (`keep_session`).

A person's sessions are shown to them by a reference derived from the id (`Session.ref`), never by the id itself:
the id is the token's hash, which is what a lookup compares.

A new session is made at every login and never taken over from the request (no session fixation). Lookups
compare hashes in the database's index, so nothing is compared character by character in Python.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from amends.store import UnitOfWork, tables

__all__ = [
    "Session", "end_session", "end_session_of_person", "end_session_of_token", "end_sessions_of", "find_session",
    "keep_session", "list_sessions", "needs_keeping", "start_session", "valid_csrf",
]  # fmt: skip

_sessions = tables.console_sessions
_TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often, not on every request
_MAX_USER_AGENT = 200


@dataclass(frozen=True, slots=True)
class Session:
    id: str  # the token's hash
    staff_id: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    origin: str | None = None  # the client's address at login
    user_agent: str | None = None  # the browser's User-Agent at login, cut to 200 characters
    stage: str | None = None  # None: signed in; "code" or "enrol": the password was right, the second step is due

    @property
    def ref(self) -> str:
        """What the person sees of the session, to end it by: 16 hex digits of a hash of the id."""
        return hashlib.sha256(b"console-session-ref\n" + self.id.encode()).hexdigest()[:16]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    uow: UnitOfWork,
    staff_id: str,
    *,
    now: datetime,
    lifetime: timedelta,
    origin: str | None,
    user_agent: str | None = None,
    stage: str | None = None,
) -> tuple[Session, str]:
    """A new session for `staff_id`, and the token for its cookie (shown this once). With a `stage`, a halfway
    session: the password was right, and the second step is still to come (web/console/_base.py opens no page
    with it but that step's)."""
    # Sessions of this person that have run out are removed here: lookups only read.
    uow.execute(sa.delete(_sessions).where(_sessions.c.staff_id == staff_id, _sessions.c.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session = Session(
        _hash(token), staff_id, secrets.token_urlsafe(32), now, now, now + lifetime,
        origin[:100] if origin else None, user_agent[:_MAX_USER_AGENT] if user_agent else None, stage,
    )  # fmt: skip
    uow.execute(
        sa.insert(_sessions).values(
            id=session.id,
            staff_id=staff_id,
            csrf_token=session.csrf_token,
            created_at=now,
            last_seen_at=now,
            expires_at=session.expires_at,
            origin=session.origin,
            user_agent=session.user_agent,
            stage=stage,
        )
    )
    return session, token


def _session(row: sa.Row[Any]) -> Session:
    return Session(
        row.id, row.staff_id, row.csrf_token, row.created_at, row.last_seen_at, row.expires_at, row.origin,
        row.user_agent, row.stage,
    )  # fmt: skip


def find_session(uow: UnitOfWork, token: str | None, *, now: datetime, idle: timedelta) -> Session | None:
    """The live session the token opens; None for no token, an unknown one, or a session that has expired or idled
    out. Reads only: `needs_keeping` says when the caller should `keep_session` in a writing unit of work."""
    if not token or len(token) > 100:
        return None
    row = uow.execute(sa.select(_sessions).where(_sessions.c.id == _hash(token))).first()
    if row is None:
        return None
    session = _session(row)
    return None if _ended(session, now, idle) else session


def list_sessions(uow: UnitOfWork, staff_id: str, *, now: datetime, idle: timedelta) -> list[Session]:
    """A person's live sessions, the most recently used first."""
    rows = uow.execute(
        sa.select(_sessions).where(_sessions.c.staff_id == staff_id).order_by(_sessions.c.last_seen_at.desc())
    )
    return [session for session in map(_session, rows) if not _ended(session, now, idle)]


def needs_keeping(session: Session, *, now: datetime) -> bool:
    """Whether its last use is due to be recorded (at most once a minute, so most requests only read)."""
    return now - session.last_seen_at >= _TOUCH_EVERY


def keep_session(uow: UnitOfWork, token: str, *, now: datetime, idle: timedelta) -> None:
    """Record the session's use now, or remove it if it has ended meanwhile."""
    session_id = _hash(token)
    row = uow.execute(sa.select(_sessions).where(_sessions.c.id == session_id)).first()
    if row is None:
        return
    session = _session(row)
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


def end_session_of_person(uow: UnitOfWork, staff_id: str, ref: str) -> Session | None:
    """End the session of `staff_id` whose reference is `ref`; the session, or None if they have no such session
    (it ended already, or it is someone else's: a person ends only their own)."""
    rows = uow.execute(sa.select(_sessions).where(_sessions.c.staff_id == staff_id)).all()
    found = next((session for session in map(_session, rows) if hmac.compare_digest(session.ref, ref)), None)
    if found is not None:
        uow.execute(sa.delete(_sessions).where(_sessions.c.id == found.id, _sessions.c.staff_id == staff_id))
    return found


def end_sessions_of(uow: UnitOfWork, staff_id: str, *, keep: str | None = None) -> int:
    """End every session of one person (a password change, a deactivation), but the one whose id is `keep`; how
    many ended."""
    query = sa.delete(_sessions).where(_sessions.c.staff_id == staff_id)
    if keep is not None:
        query = query.where(_sessions.c.id != keep)
    return uow.execute(query).rowcount or 0
