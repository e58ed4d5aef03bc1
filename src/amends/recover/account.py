"""A staff member's own account: changing their password with the current one, and seeing and ending their own
console sessions. Each change is audited; nobody reaches another person's account here (an admin sets passwords
with `amends staff password`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from amends.access.passwords import MAX_PASSWORD, check_new_password
from amends.access.sessions import Session, end_session_of_person, end_sessions_of, list_sessions
from amends.errors import InvalidInput
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.recover.staff import check_password, set_password
from amends.store import UnitOfWork

__all__ = ["WrongPassword", "change_own_password", "end_own_session", "end_own_sessions", "own_sessions"]


class WrongPassword(InvalidInput):
    """The current password given is not the person's: counted like a failed login (web/console)."""

    def __init__(self) -> None:
        super().__init__("current", "that is not your current password")


def change_own_password(
    uow: UnitOfWork, actor: Actor, *, current: str, new: str, repeat: str, session_id: str, now: datetime
) -> int:
    """Change the acting person's password: `current` must be theirs, `new` a password that may be set, and
    `repeat` the same again. Every other session of theirs ends; the one they changed it from (`session_id`)
    stays. Returns how many sessions ended. WrongPassword, or InvalidInput naming `new` or `repeat`."""
    member = actor.person("changing a password")
    if not check_password(uow, member.id, current[: MAX_PASSWORD + 1]):
        raise WrongPassword
    if new != repeat:
        raise InvalidInput("repeat", "is not the same as the new password")
    if new == current:
        raise InvalidInput("new", "is the password you have now; choose another")
    try:
        check_new_password(new, (member.id, member.name, member.email or ""))
    except InvalidInput as exc:
        raise InvalidInput("new", exc.reason) from None
    others = len(list_sessions(uow, member.id, now=now, idle=timedelta.max)) - 1
    set_password(uow, member.id, new, now=now, keep_session=session_id)
    audit(uow, actor, "staff.password_changed", f"staff:{member.id}", at=now, via="console",
          sessions_ended=max(others, 0))  # fmt: skip
    return max(others, 0)


def own_sessions(uow: UnitOfWork, actor: Actor, *, now: datetime, idle: timedelta) -> list[Session]:
    """The acting person's live console sessions, the most recently used first."""
    return list_sessions(uow, actor.person("listing sessions").id, now=now, idle=idle)


def end_own_session(uow: UnitOfWork, actor: Actor, ref: str, *, current: str, now: datetime) -> Session | None:
    """End one of the acting person's other sessions, named by its reference; None if they have no such session
    (it ended already). The session in use (id `current`) is ended by logging out, not here."""
    member = actor.person("ending a session")
    ref = ref.strip().lower()
    if len(ref) != 16 or any(c not in "0123456789abcdef" for c in ref):
        raise InvalidInput("session", "not a session's reference (16 hex digits)")
    if Session(current, member.id, "", now, now, now).ref == ref:
        raise InvalidInput("session", "that is the session you are using: log out to end it")
    ended = end_session_of_person(uow, member.id, ref)
    if ended is not None:
        audit(uow, actor, "console.session_ended", f"staff:{member.id}", at=now, session=ref,
              started=ended.created_at.isoformat(), origin=ended.origin)  # fmt: skip
    return ended


def end_own_sessions(uow: UnitOfWork, actor: Actor, *, current: str, now: datetime) -> int:
    """End every session of the acting person but the one in use; how many ended."""
    member = actor.person("ending sessions")
    ended = end_sessions_of(uow, member.id, keep=current)
    if ended:
        audit(uow, actor, "console.sessions_ended", f"staff:{member.id}", at=now, sessions=ended)
    return ended
