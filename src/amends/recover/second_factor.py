"""A staff member's second step at login: a TOTP authenticator they enrol on their account page, with one-time
recovery codes, and its reset by an administrator (`amends staff reset-second-factor`).

Enrolment is two steps: a secret is made and shown (with its QR code) while it is pending, and turned on only
when a code from it is typed back. Once on, the secret is never shown again; the recovery codes are shown once,
when made. Every change and every use of a recovery code is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from amends.access.sessions import end_sessions_of
from amends.access.totp import accepted_step, hash_recovery_code, new_recovery_codes, new_secret
from amends.errors import Conflict, InvalidInput
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.recover.staff import get_staff
from amends.store import UnitOfWork, tables

__all__ = [
    "SecondFactor", "check_second_step", "confirm_enrolment", "reset_second_factor", "second_factor_of",
    "start_enrolment",
]  # fmt: skip

_staff = tables.staff
_codes = tables.staff_recovery_codes


@dataclass(frozen=True, slots=True)
class SecondFactor:
    """Where a person stands: on, or pending with its secret (shown until confirmed), or neither."""

    enabled_at: datetime | None
    pending_secret: str | None
    recovery_codes_left: int

    @property
    def is_on(self) -> bool:
        return self.enabled_at is not None


def second_factor_of(uow: UnitOfWork, staff_id: str) -> SecondFactor:
    row = uow.execute(sa.select(_staff.c.totp_secret, _staff.c.totp_enabled_at).where(_staff.c.id == staff_id)).one()
    left = uow.execute(
        sa.select(sa.func.count()).select_from(_codes).where(_codes.c.staff_id == staff_id, _codes.c.used_at.is_(None))
    ).scalar_one()
    pending = row.totp_secret if row.totp_enabled_at is None else None
    return SecondFactor(row.totp_enabled_at, pending, int(left))


def start_enrolment(uow: UnitOfWork, actor: Actor, *, now: datetime) -> str:
    """A new pending secret for the acting person (replacing a pending one); Conflict when theirs is on."""
    member = actor.person("setting up a second step")
    if second_factor_of(uow, member.id).is_on:
        raise Conflict("your second step is on already; an administrator can reset it")
    secret = new_secret()
    uow.execute(sa.update(_staff).where(_staff.c.id == member.id).values(totp_secret=secret, totp_last_step=None))
    audit(uow, actor, "staff.second_factor_started", f"staff:{member.id}", at=now)
    return secret


def confirm_enrolment(uow: UnitOfWork, actor: Actor, code: str, *, now: datetime) -> list[str]:
    """Turn the pending secret on with a code from it; the new recovery codes (shown once). InvalidInput naming
    `code` for a wrong one; Conflict when nothing is pending."""
    member = actor.person("setting up a second step")
    state = second_factor_of(uow, member.id)
    if state.pending_secret is None:
        raise Conflict("there is no second step being set up; start again")
    step = accepted_step(state.pending_secret, code, now=now, last_step=None)
    if step is None:
        raise InvalidInput("code", "not the code your app shows now; check the time on your phone and try again")
    uow.execute(sa.update(_staff).where(_staff.c.id == member.id).values(totp_enabled_at=now, totp_last_step=step))
    codes = new_recovery_codes()
    uow.execute(sa.delete(_codes).where(_codes.c.staff_id == member.id))
    uow.execute(
        sa.insert(_codes),
        [
            {"staff_id": member.id, "code_hash": hash_recovery_code(c), "created_at": now, "used_at": None}
            for c in codes
        ],
    )
    audit(uow, actor, "staff.second_factor_enabled", f"staff:{member.id}", at=now)
    return codes


def check_second_step(uow: UnitOfWork, actor: Actor, code: str, *, now: datetime) -> str | None:
    """Whether `code` is the acting person's second step now: "totp" (a code not used before), "recovery" (a
    recovery code, now used up), or None. The step or the code is recorded, so neither opens twice."""
    member = actor.person("the second step")
    row = uow.execute(
        sa.select(_staff.c.totp_secret, _staff.c.totp_enabled_at, _staff.c.totp_last_step)
        .where(_staff.c.id == member.id)
        .with_for_update()
    ).one()
    if row.totp_enabled_at is None or row.totp_secret is None:
        return None
    step = accepted_step(row.totp_secret, code, now=now, last_step=row.totp_last_step)
    if step is not None:
        # Only a later step: two requests racing with one code cannot both pass.
        moved = uow.execute(
            sa.update(_staff)
            .where(_staff.c.id == member.id, sa.or_(_staff.c.totp_last_step.is_(None), _staff.c.totp_last_step < step))
            .values(totp_last_step=step)
        ).rowcount
        return "totp" if moved else None
    if len(code) > 40:
        return None
    used = uow.execute(
        sa.update(_codes)
        .where(
            _codes.c.staff_id == member.id, _codes.c.code_hash == hash_recovery_code(code), _codes.c.used_at.is_(None)
        )
        .values(used_at=now)
    ).rowcount
    if not used:
        return None
    audit(uow, actor, "staff.recovery_code_used", f"staff:{member.id}", at=now)
    return "recovery"


def reset_second_factor(uow: UnitOfWork, staff_id: str, *, actor: Actor, now: datetime) -> bool:
    """Turn a person's second step off (a lost phone), remove their recovery codes and end every session they
    had; whether there was anything to reset. They enrol again at their next login, if their role needs it."""
    member = get_staff(uow, staff_id)
    state = second_factor_of(uow, member.id)
    uow.execute(
        sa.update(_staff)
        .where(_staff.c.id == member.id)
        .values(totp_secret=None, totp_enabled_at=None, totp_last_step=None)
    )
    uow.execute(sa.delete(_codes).where(_codes.c.staff_id == member.id))
    end_sessions_of(uow, member.id)
    audit(uow, actor, "staff.second_factor_reset", f"staff:{member.id}", at=now, was_on=state.is_on)
    return state.is_on or state.pending_secret is not None
