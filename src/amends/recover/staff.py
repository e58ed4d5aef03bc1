"""Staff: the people who own cases and grant remedies, each with a role and maybe a team.

A staff member acts through their own API key (`amends staff key ID`): the key carries no rights of its
own, the role does, so a change of role or a deactivation takes effect on the next request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from amends.access import ApiKey, Scope, create_key, list_keys, revoke_key
from amends.access.passwords import hash_password, needs_rehash, rehash, verify_password
from amends.access.sessions import end_sessions_of
from amends.errors import Conflict, InvalidInput, NotFound
from amends.recover.roles import ROLES, Role
from amends.store import UnitOfWork, tables

__all__ = [
    "ROLE_SCOPES",
    "STAFF_KEY_LIFETIME",
    "StaffMember",
    "add_staff",
    "check_login",
    "check_password",
    "create_staff_key",
    "get_staff",
    "list_staff",
    "renew_staff_key",
    "revoke_staff_key",
    "set_password",
    "staff_key_of",
    "update_staff",
]

_staff = tables.staff
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")

# What each role may read and send through the integration-style endpoints. Working a case, granting,
# approving and managing staff are checked against the role itself, in recover/. Agents and leads read
# customers and incidents only through the cases they may see (a case carries its incidents): the customer
# and incident endpoints know nothing of teams.
_WORK = frozenset(
    {
        Scope.CASES_READ,
        Scope.COMPLAINTS_WRITE,
        Scope.CARDS_WRITE,
        Scope.OPT_OUTS_WRITE,
        Scope.FEEDBACK_WRITE,
        Scope.FEEDBACK_READ,
        Scope.FEEDBACK_ANSWER,
        Scope.FEEDBACK_REQUESTS_WRITE,  # a service advisor prints the link on the invoice they hand over
    }
)
ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.AGENT: _WORK,
    Role.LEAD: _WORK,
    Role.MANAGER: _WORK
    | {
        Scope.CUSTOMERS_READ,
        Scope.INCIDENTS_READ,
        Scope.LEDGER_READ,
        Scope.MESSAGES_READ,
        Scope.MESSAGES_WRITE,
        Scope.SUGGESTIONS_WRITE,
        Scope.METRICS_READ,
    },
    Role.ADMIN: frozenset(Scope),
}


@dataclass(frozen=True, slots=True)
class StaffMember:
    id: str
    name: str
    email: str | None
    role: Role
    team: str | None
    active: bool
    created_at: datetime

    @property
    def scopes(self) -> frozenset[Scope]:
        return ROLE_SCOPES[self.role]


def add_staff(
    uow: UnitOfWork,
    staff_id: str,
    *,
    name: str,
    role: Role | str,
    team: str | None = None,
    email: str | None = None,
    now: datetime,
) -> StaffMember:
    """Add a staff member; Conflict if the id is taken."""
    member = StaffMember(
        _check_id(staff_id), _check_name(name), _check_email(email), _role(role), _team(team), True, now
    )
    if uow.execute(sa.select(_staff.c.id).where(_staff.c.id == staff_id)).first() is not None:
        raise Conflict(f"a staff member with the id {staff_id!r} exists")
    uow.execute(
        sa.insert(_staff).values(
            id=member.id,
            name=member.name,
            email=member.email,
            role=member.role.value,
            team=member.team,
            active=True,
            created_at=now,
            last_assigned_at=None,
        )
    )
    return member


def get_staff(uow: UnitOfWork, staff_id: str) -> StaffMember:
    row = uow.execute(sa.select(_staff).where(_staff.c.id == staff_id)).first()
    if row is None:
        raise NotFound(f"no staff member {staff_id!r}")
    return _from_row(row)


def list_staff(uow: UnitOfWork, *, team: str | None = None, active: bool | None = None) -> list[StaffMember]:
    query = sa.select(_staff).order_by(_staff.c.id)
    if team is not None:
        query = query.where(_staff.c.team == team)
    if active is not None:
        query = query.where(_staff.c.active == active)
    return [_from_row(row) for row in uow.execute(query)]


_UNSET: Any = object()


def update_staff(
    uow: UnitOfWork,
    staff_id: str,
    *,
    name: str | None = None,
    role: Role | str | None = None,
    team: str | None = _UNSET,
    email: str | None = _UNSET,
    active: bool | None = None,
) -> StaffMember:
    """Change what is given; `team=None` takes the member out of any team."""
    current = get_staff(uow, staff_id)
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = _check_name(name)
    if role is not None:
        values["role"] = _role(role).value
    if team is not _UNSET:
        values["team"] = _team(team)
    if email is not _UNSET:
        values["email"] = _check_email(email)
    if active is not None:
        values["active"] = active
    if values:
        uow.execute(sa.update(_staff).where(_staff.c.id == current.id).values(**values))
    if active is False:
        end_sessions_of(uow, current.id)  # a deactivated person is logged out everywhere at once
    return get_staff(uow, staff_id)


def set_password(
    uow: UnitOfWork, staff_id: str, password: str, *, now: datetime, keep_session: str | None = None
) -> StaffMember:
    """Set a staff member's console password (12 to 256 characters, not easy to guess: access/passwords.py);
    every session they had ends, but the one whose id is `keep_session` (the one they changed it from)."""
    member = get_staff(uow, staff_id)
    about = (member.id, member.name, member.email or "")
    uow.execute(
        sa.update(_staff)
        .where(_staff.c.id == member.id)
        .values(password_hash=hash_password(password, about), password_changed_at=now)
    )
    end_sessions_of(uow, member.id, keep=keep_session)
    return member


def check_password(uow: UnitOfWork, staff_id: str, password: str) -> bool:
    """Whether `password` is this staff member's current one (the same work when they have none)."""
    row = uow.execute(sa.select(_staff.c.password_hash).where(_staff.c.id == staff_id)).first()
    return verify_password(row.password_hash if row is not None else None, password)


def _named_by(login: str) -> sa.ColumnElement[bool] | None:
    """Which staff rows a login name (already stripped) names: the id, or an email too when it has an @."""
    if not 0 < len(login) <= 320:
        return None
    if "@" in login:
        return sa.or_(_staff.c.id == login, sa.func.lower(_staff.c.email) == login.lower())
    return _staff.c.id == login


def staff_id_for_login(uow: UnitOfWork, login: str) -> str | None:
    """The id of the staff member (active or not) whom `login` names, by id or email, as the login form takes it;
    None for an email two people share, which names neither (`check_login` opens neither account by it)."""
    login = login.strip()
    if (named := _named_by(login)) is None:
        return None
    ids = uow.execute(sa.select(_staff.c.id).where(named).order_by(_staff.c.id).limit(2)).scalars().all()
    return login if login in ids else (ids[0] if len(ids) == 1 else None)


def check_login(uow: UnitOfWork, login: str, password: str) -> StaffMember | None:
    """The active staff member whose id or email is `login` and whose password this is; None otherwise, after
    the same work either way (a wrong name is not told apart from a wrong password, by answer or by time)."""
    login = login.strip()
    named = _named_by(login)
    rows = [] if named is None else uow.execute(sa.select(_staff).where(named).order_by(_staff.c.id).limit(2)).all()
    exact = [r for r in rows if r.id == login]
    # An email two people share opens neither account: log in with the staff id.
    row = exact[0] if exact else rows[0] if len(rows) == 1 else None
    stored = row.password_hash if row is not None else None
    if not verify_password(stored, password) or row is None or not row.active:
        return None
    if stored is not None and needs_rehash(stored):  # the same password, hashed with today's parameters
        uow.execute(sa.update(_staff).where(_staff.c.id == row.id).values(password_hash=rehash(password)))
    return _from_row(row)


STAFF_KEY_LIFETIME = timedelta(days=90)  # the default of the setting `staff_key_lifetime`


def create_staff_key(
    uow: UnitOfWork, staff_id: str, *, now: datetime, lifetime: timedelta = STAFF_KEY_LIFETIME
) -> tuple[ApiKey, str]:
    """A new API key that acts as this staff member, until `lifetime` from now; the text is shown once. A member
    has one key in use at a time: Conflict while another is (revoke it first, or `renew_staff_key`)."""
    member = get_staff(uow, staff_id)
    return create_key(uow, f"staff {member.id}", [], now=now, staff_id=member.id, expires_at=now + lifetime)


def staff_key_of(uow: UnitOfWork, staff_id: str) -> ApiKey | None:
    """The member's key in use (not revoked; perhaps expired), if they have one."""
    return next(iter(list_keys(uow, staff_id=staff_id, in_use=True)), None)


def revoke_staff_key(uow: UnitOfWork, staff_id: str, *, now: datetime) -> ApiKey | None:
    """Revoke the member's key in use, if they have one; the key as revoked, or None."""
    current = staff_key_of(uow, staff_id)
    return None if current is None else revoke_key(uow, current.id, now=now)


def renew_staff_key(
    uow: UnitOfWork, staff_id: str, *, now: datetime, lifetime: timedelta = STAFF_KEY_LIFETIME
) -> tuple[ApiKey, str]:
    """Revoke the member's key in use, if any, and make a new one in its place."""
    revoke_staff_key(uow, staff_id, now=now)
    return create_staff_key(uow, staff_id, now=now, lifetime=lifetime)


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise InvalidInput("id", "1-100 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def _check_name(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 200:
        raise InvalidInput("name", "1-200 characters")
    return value


def _check_email(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _EMAIL.match(value):
        raise InvalidInput("email", "not an email address")
    return value


def _team(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _TEAM.match(value):
        raise InvalidInput("team", "1-100 letters, digits, spaces, '.', '_' or '-'")
    return value


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput("role", f"unknown role {value!r}; the roles are {', '.join(ROLES)}") from None


def _from_row(row: sa.Row[Any]) -> StaffMember:
    return StaffMember(row.id, row.name, row.email, Role(row.role), row.team, bool(row.active), row.created_at)
