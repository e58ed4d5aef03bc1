"""Cases: the recovery work for one customer, with one owner at a time and the steps of its playbook.

A case is opened by an incident (proactive) or by the customer (reactive: a complaint). At most one case
per customer is open; what comes while it is open joins it. Status runs open -> resolved -> closed, and a
reopening is recorded on the same case, never a new one. Every change is in the audit log.

Who may do what: an integration key with `cases:read` reads every case. Staff read the cases they own and,
if they are in a team, those of their team; managers and admins read all. Working a case (steps, contacts,
resolving) is for its owner, a lead of its team, or a manager; an unassigned case can be taken by anyone who
can see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from amends.access import Scope
from amends.errors import Conflict, Forbidden, InvalidInput, NotFound
from amends.recover.actors import SYSTEM, Actor
from amends.recover.audit import audit
from amends.recover.lock import recovery_lock
from amends.recover.playbooks import Anchor, Playbook, StepKind
from amends.recover.roles import Role
from amends.recover.staff import StaffMember, get_staff
from amends.store import UnitOfWork, tables

__all__ = [
    "WITHHELD",
    "Case",
    "CaseStep",
    "Fault",
    "Origin",
    "Status",
    "acknowledge",
    "add_contact",
    "assign",
    "can_see",
    "case_from_row",
    "close_case",
    "complete_remedy_step",
    "complete_step",
    "customer_wrote",
    "load_case",
    "load_steps",
    "open_case",
    "open_case_of",
    "record_contact",
    "reopen_case",
    "required_text",
    "resolve_case",
    "save_draft",
    "set_fault",
    "set_owner",
    "visibility",
    "visible_case",
    "workable_case",
]

_cases = tables.cases
_steps = tables.case_steps
_handoffs = tables.handoffs
_contacts = tables.case_contacts

# Steps completed through their own action, not through `complete_step`.
_COMPLETED_ELSEWHERE = {
    StepKind.TAKE_OWNERSHIP: "the owner acknowledges the case (POST .../acknowledge)",
    StepKind.LESSEN_INCONVENIENCE: "a remedy is granted, approved, or recorded as none (POST .../remedies)",
}
_CHANNELS = ("email", "phone", "sms", "chat", "letter", "in_person", "web", "other")


class Origin(StrEnum):
    PROACTIVE = "proactive"  # we noticed first (an incident)
    REACTIVE = "reactive"  # the customer told us (a complaint, negative feedback)


class Status(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Fault(StrEnum):
    COMPANY = "company"
    CUSTOMER = "customer"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CaseStep:
    kind: StepKind
    position: int
    title: str
    due_at: datetime | None
    completed_at: datetime | None
    completed_by: str | None
    draft: str | None
    outcome: Mapping[str, Any] | None

    def is_overdue(self, now: datetime) -> bool:
        return self.completed_at is None and self.due_at is not None and self.due_at < now


@dataclass(frozen=True, slots=True)
class Case:
    id: int
    customer_id: str
    origin: Origin
    status: Status
    playbook: str
    severity: int
    fault: Fault
    owner_id: str | None
    team: str | None
    acknowledged_at: datetime | None
    opened_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    first_contact_at: datetime | None
    customer_spoke_at: datetime | None
    reopened: int
    resolution: str | None
    held_out: bool = False  # drawn into the holdout experiment when it opened (recover/holdout.py)
    holdout_lifted_at: datetime | None = None

    @property
    def withheld(self) -> bool:
        """Held out (recover/holdout.py), and neither has the customer raised it nor a more severe incident lifted
        it: nothing proactive goes out on it."""
        return self.held_out and self.customer_spoke_at is None and self.holdout_lifted_at is None

    @property
    def customer_spoke_first(self) -> bool | None:
        """True if the customer raised it before we contacted them; None while neither has happened."""
        if self.customer_spoke_at is None:
            return None if self.first_contact_at is None else False
        return self.first_contact_at is None or self.customer_spoke_at <= self.first_contact_at


# `Case.withheld` as a condition on the cases table: held out, and neither raised by the customer nor lifted.
WITHHELD = sa.and_(
    _cases.c.held_out.is_(True), _cases.c.customer_spoke_at.is_(None), _cases.c.holdout_lifted_at.is_(None)
)


# --- reading ---------------------------------------------------------------------------------------------


def load_case(uow: UnitOfWork, case_id: int, *, for_update: bool = False) -> Case:
    """The case with this id, whoever asks (callers check `can_see`); NotFound if there is none."""
    query = sa.select(_cases).where(_cases.c.id == case_id)
    if for_update and uow.dialect == "postgresql":
        query = query.with_for_update()
    row = uow.execute(query).first()
    if row is None:
        raise NotFound(f"no case {case_id}")
    return case_from_row(row)


def case_from_row(row: sa.Row[Any]) -> Case:
    return Case(
        row.id,
        row.customer_id,
        Origin(row.origin),
        Status(row.status),
        row.playbook,
        row.severity,
        Fault(row.fault),
        row.owner_id,
        row.team,
        row.acknowledged_at,
        row.opened_at,
        row.resolved_at,
        row.closed_at,
        row.first_contact_at,
        row.customer_spoke_at,
        row.reopened,
        row.resolution,
        bool(row.held_out),
        row.holdout_lifted_at,
    )


def load_steps(uow: UnitOfWork, case_id: int) -> list[CaseStep]:
    rows = uow.execute(sa.select(_steps).where(_steps.c.case_id == case_id).order_by(_steps.c.position))
    return [
        CaseStep(StepKind(r.kind), r.position, r.title, r.due_at, r.completed_at, r.completed_by, r.draft, r.outcome)
        for r in rows
    ]


def open_case_of(uow: UnitOfWork, customer_id: str) -> Case | None:
    """The customer's open case, if there is one."""
    row = uow.execute(
        sa.select(_cases).where(_cases.c.customer_id == customer_id, _cases.c.status == Status.OPEN.value)
    ).first()
    return None if row is None else case_from_row(row)


def can_see(case: Case, actor: Actor) -> bool:
    """Whether the actor may read this case (see the module's docstring)."""
    member = actor.staff
    if member is None:
        return actor is SYSTEM or Scope.CASES_READ in actor.scopes
    if member.role.at_least(Role.MANAGER):
        return True
    return case.owner_id == member.id or (member.team is not None and case.team == member.team)


def visibility(actor: Actor) -> sa.ColumnElement[bool] | None:
    """`can_see` as a condition on the cases table (None: every case)."""
    member = actor.staff
    if member is None or member.role.at_least(Role.MANAGER):
        return None
    mine = _cases.c.owner_id == member.id
    return mine if member.team is None else sa.or_(mine, _cases.c.team == member.team)


def visible_case(uow: UnitOfWork, case_id: int, actor: Actor, *, for_update: bool = False) -> Case:
    """The case, if the actor may see it; NotFound otherwise, so an id guessed says nothing."""
    case = load_case(uow, case_id, for_update=for_update)
    if not can_see(case, actor):
        raise NotFound(f"no case {case_id}")
    return case


def workable_case(uow: UnitOfWork, case_id: int, actor: Actor, doing: str) -> tuple[Case, StaffMember]:
    """The case and the staff member working it, if they may: its owner, anyone who can see it while it has
    no owner, a lead of its team, or a manager."""
    member = actor.person(doing)
    case = visible_case(uow, case_id, actor, for_update=True)
    if member.role.at_least(Role.MANAGER) or case.owner_id in (None, member.id):
        return case, member
    if member.role is Role.LEAD and member.team is not None and case.team == member.team:
        return case, member
    raise Forbidden(f"{doing}: case {case_id} is owned by {case.owner_id}; ask them, or a lead, to hand it over")


def _open(case: Case, doing: str) -> None:
    if case.status is not Status.OPEN:
        raise Conflict(f"{doing}: case {case.id} is {case.status.value}; reopen it first")


# --- opening ---------------------------------------------------------------------------------------------


def open_case(
    uow: UnitOfWork,
    *,
    customer_id: str,
    origin: Origin,
    playbook: Playbook,
    severity: int,
    team: str | None,
    now: datetime,
    customer_spoke_at: datetime | None = None,
    actor: Actor = SYSTEM,
    held_out: bool = False,
) -> Case:
    """Open a case and its steps (callers hold the recovery lock and know the customer has no open case). A case
    `held_out` by the experiment (recover/holdout.py) says so for good, and its steps wait: nothing falls due."""
    case_id = uow.execute(
        sa.insert(_cases)
        .values(
            customer_id=customer_id,
            origin=origin.value,
            status=Status.OPEN.value,
            playbook=playbook.id,
            severity=severity,
            fault=Fault.UNKNOWN.value,
            owner_id=None,
            team=team,
            acknowledged_at=None,
            opened_at=now,
            resolved_at=None,
            closed_at=None,
            first_contact_at=None,
            customer_spoke_at=customer_spoke_at,
            reopened=0,
            resolution=None,
            held_out=held_out,
        )
        .returning(_cases.c.id)
    ).scalar_one()
    uow.execute(
        sa.insert(_steps),
        [
            {
                "case_id": case_id,
                "position": position,
                "kind": step.kind.value,
                "title": step.title,
                "due_at": None if held_out else step.due_at(now, None),
                "completed_at": None,
                "completed_by": None,
                "draft": None,
                "outcome": None,
            }
            for position, step in enumerate(playbook.steps, start=1)
        ],
    )
    audit(uow, actor, "case.opened", f"case:{case_id}", at=now, origin=origin.value, playbook=playbook.id)
    return load_case(uow, case_id)


# --- ownership -------------------------------------------------------------------------------------------


def set_owner(uow: UnitOfWork, case: Case, to: StaffMember, *, reason: str, by: Actor, now: datetime) -> Case:
    """Make `to` the owner, recording the handoff (the first assignment too). The new owner has not yet
    acknowledged."""
    if not to.active:
        raise InvalidInput("to", f"{to.id} is not active")
    if case.owner_id == to.id:
        raise Conflict(f"case {case.id} is already owned by {to.id}")
    uow.execute(sa.update(_cases).where(_cases.c.id == case.id).values(owner_id=to.id, acknowledged_at=None))
    uow.execute(
        sa.insert(_handoffs).values(
            case_id=case.id,
            from_id=case.owner_id,
            to_id=to.id,
            reason=reason,
            by_id=None if by.staff is None else by.staff.id,
            at=now,
        )
    )
    # The audit log is never erased, so it keeps no free text: the reason is on the handoff, where erasure reaches it.
    audit(uow, by, "case.assigned", f"case:{case.id}", at=now, from_id=case.owner_id, to_id=to.id, chars=len(reason))
    return load_case(uow, case.id)


def assign(uow: UnitOfWork, case_id: int, to_id: str, *, reason: str, actor: Actor, now: datetime) -> Case:
    """Hand the case to `to_id`, with a reason: leads (in their team), managers and admins do; an owner does not
    pass a case off, they ask a lead (DESIGN: take ownership, no pass-off)."""
    actor.at_least(Role.LEAD, "assigning a case")
    reason = required_text("reason", reason)
    case, _member = workable_case(uow, case_id, actor, "assigning a case")
    to = get_staff(uow, to_id)
    if case.status is Status.CLOSED:
        raise Conflict(f"assigning a case: case {case_id} is closed; reopen it first")
    return set_owner(uow, case, to, reason=reason, by=actor, now=now)


def acknowledge(uow: UnitOfWork, case_id: int, *, actor: Actor, now: datetime) -> Case:
    """The owner takes the case on: this completes the take-ownership step. An unassigned case is taken by
    the one who acknowledges it."""
    case, member = workable_case(uow, case_id, actor, "acknowledging a case")
    _open(case, "acknowledging a case")
    if case.owner_id is None:
        case = set_owner(uow, case, member, reason="took the unassigned case", by=actor, now=now)
    if case.owner_id != member.id:
        raise Forbidden(f"acknowledging a case: only its owner, {case.owner_id}, acknowledges it")
    if case.acknowledged_at is not None:
        return case
    uow.execute(sa.update(_cases).where(_cases.c.id == case_id).values(acknowledged_at=now))
    _complete(uow, case_id, StepKind.TAKE_OWNERSHIP, member.id, now, {"owner": member.id})
    audit(uow, actor, "case.acknowledged", f"case:{case_id}", at=now)
    return load_case(uow, case_id)


# --- steps and contacts ----------------------------------------------------------------------------------


def save_draft(uow: UnitOfWork, case_id: int, text: str, *, actor: Actor, now: datetime) -> CaseStep:
    """Keep the apology's draft on the empathise step, to be edited before it goes."""
    case, _member = workable_case(uow, case_id, actor, "editing the apology")
    _open(case, "editing the apology")
    text = required_text("draft", text, limit=20_000)
    step = _step(uow, case_id, StepKind.EMPATHISE)
    if step.completed_at is not None:
        raise Conflict("editing the apology: it has been sent")
    uow.execute(
        sa.update(_steps).where(_steps.c.case_id == case_id, _steps.c.kind == step.kind.value).values(draft=text)
    )
    audit(uow, actor, "case.draft_saved", f"case:{case_id}", at=now, chars=len(text))
    return _step(uow, case_id, StepKind.EMPATHISE)


def complete_step(
    uow: UnitOfWork,
    case_id: int,
    kind: StepKind | str,
    *,
    actor: Actor,
    now: datetime,
    note: str | None = None,
    outcome: Mapping[str, Any] | None = None,
    channel: str | None = None,
) -> CaseStep:
    """Mark a step done. Sending the apology (empathise) and the follow-up (manage_memory) are contacts with
    the customer and are recorded as such; take_ownership and lessen_inconvenience have their own actions."""
    step_kind = _kind(kind)
    if step_kind in _COMPLETED_ELSEWHERE:
        raise InvalidInput("step", f"{step_kind.value} is completed when {_COMPLETED_ELSEWHERE[step_kind]}")
    case, member = workable_case(uow, case_id, actor, f"completing {step_kind.value}")
    if step_kind is StepKind.EMPATHISE:
        _open(case, f"completing {step_kind.value}")
    elif case.status is not Status.RESOLVED:  # the follow-up and the thank-you come after the resolution
        raise Conflict(f"completing {step_kind.value}: case {case_id} is {case.status.value}; it comes after resolving")
    step = _step(uow, case_id, step_kind)
    if step.completed_at is not None:
        raise Conflict(f"{step_kind.value} was completed at {step.completed_at.isoformat()} by {step.completed_by}")
    details: dict[str, Any] = dict(outcome or {})
    if note is not None:
        details["note"] = required_text("note", note, limit=5_000)
    if step_kind is StepKind.EMPATHISE:
        details["text"] = required_text("text", str(details.get("text") or step.draft or ""), limit=20_000)
    if step_kind in (StepKind.EMPATHISE, StepKind.MANAGE_MEMORY):
        add_contact(uow, case, "outbound", _channel(channel or "email"), member.id, details.get("note"), now)
    _complete(uow, case_id, step_kind, member.id, now, details)
    audit(uow, actor, "case.step_completed", f"case:{case_id}", at=now, step=step_kind.value)
    return _step(uow, case_id, step_kind)


def record_contact(
    uow: UnitOfWork,
    case_id: int,
    *,
    direction: str,
    channel: str,
    note: str | None,
    actor: Actor,
    now: datetime,
    at: datetime | None = None,
) -> Case:
    """A contact with the customer about the case: we called them, they wrote back."""
    if direction not in ("outbound", "inbound"):
        raise InvalidInput("direction", "outbound or inbound")
    case, member = workable_case(uow, case_id, actor, "recording a contact")
    if direction == "outbound" and case.withheld:
        raise Conflict(
            f"recording a contact: case {case.id} is in the holdout experiment; we do not contact the customer "
            "about it unless they raise it (record their contact as inbound)"
        )
    when = at or now
    if when > now:
        raise InvalidInput("at", "a contact cannot be in the future")
    if when < case.opened_at:
        raise InvalidInput("at", "before the case was opened; record it as a complaint, or at the opening")
    text = None if note is None else required_text("note", note)
    add_contact(uow, case, direction, _channel(channel), member.id, text, when)
    if direction == "inbound":
        _spoke(uow, case, when)
    audit(uow, actor, "case.contact", f"case:{case_id}", at=now, direction=direction, channel=channel)
    return load_case(uow, case_id)


def customer_wrote(
    uow: UnitOfWork, case_id: int, *, channel: str, note: str, actor: Actor, at: datetime, **details: Any
) -> Case:
    """The customer wrote to us about the case (a reply to our email): an inbound contact on its thread, whatever
    its status, and the first time they spoke if it is the first. Nothing else changes: a resolved or closed case
    stays so, for its owner to read and decide (`reopen_case`); a reply after a resolution is often thanks."""
    case = load_case(uow, case_id, for_update=True)
    add_contact(uow, case, "inbound", _channel(channel), None, note, at)
    _spoke(uow, case, at)
    audit(
        uow,
        actor,
        "case.customer_wrote",
        f"case:{case_id}",
        at=at,
        channel=channel,
        status=case.status.value,
        **details,
    )
    return load_case(uow, case_id)


def _spoke(uow: UnitOfWork, case: Case, at: datetime) -> None:
    """`customer_spoke_at` is the first time the customer raised it themselves."""
    if case.customer_spoke_at is None or at < case.customer_spoke_at:
        uow.execute(sa.update(_cases).where(_cases.c.id == case.id).values(customer_spoke_at=at))


def complete_remedy_step(uow: UnitOfWork, case_id: int, by: str, now: datetime, outcome: Mapping[str, Any]) -> None:
    """Lessening the inconvenience is done (a grant, an approval, or none with a reason); once is enough."""
    step = _find_step(uow, case_id, StepKind.LESSEN_INCONVENIENCE)
    if step is not None and step.completed_at is None:
        _complete(uow, case_id, StepKind.LESSEN_INCONVENIENCE, by, now, outcome)


def add_contact(
    uow: UnitOfWork, case: Case, direction: str, channel: str, by: str | None, note: Any, at: datetime
) -> None:
    uow.execute(
        sa.insert(_contacts).values(case_id=case.id, direction=direction, channel=channel, at=at, by_id=by, note=note)
    )
    if direction == "outbound" and (case.first_contact_at is None or at < case.first_contact_at):
        uow.execute(sa.update(_cases).where(_cases.c.id == case.id).values(first_contact_at=at))


def _complete(
    uow: UnitOfWork, case_id: int, kind: StepKind, by: str, now: datetime, outcome: Mapping[str, Any]
) -> None:
    uow.execute(
        sa.update(_steps)
        .where(_steps.c.case_id == case_id, _steps.c.kind == kind.value, _steps.c.completed_at.is_(None))
        .values(completed_at=now, completed_by=by, outcome=dict(outcome))
    )


def _find_step(uow: UnitOfWork, case_id: int, kind: StepKind) -> CaseStep | None:
    for step in load_steps(uow, case_id):
        if step.kind is kind:
            return step
    return None


def _step(uow: UnitOfWork, case_id: int, kind: StepKind) -> CaseStep:
    step = _find_step(uow, case_id, kind)
    if step is None:
        raise InvalidInput("step", f"the playbook of case {case_id} has no {kind.value} step")
    return step


# --- status ----------------------------------------------------------------------------------------------


def resolve_case(
    uow: UnitOfWork, case_id: int, *, resolution: str, actor: Actor, now: datetime, playbook: Playbook
) -> Case:
    """Resolved: what was done, in a sentence. Steps anchored on the resolution (the follow-up, the thank-you)
    become due."""
    resolution = required_text("resolution", resolution)
    recovery_lock(uow)  # intake joins no incident to the case while it is resolved
    case, _member = workable_case(uow, case_id, actor, "resolving a case")
    _open(case, "resolving a case")
    uow.execute(
        sa.update(_cases)
        .where(_cases.c.id == case_id)
        .values(status=Status.RESOLVED.value, resolved_at=now, resolution=resolution)
    )
    for step in playbook.steps:
        if step.anchor is Anchor.RESOLVED:
            uow.execute(
                sa.update(_steps)
                .where(_steps.c.case_id == case_id, _steps.c.kind == step.kind.value, _steps.c.completed_at.is_(None))
                .values(due_at=step.due_at(case.opened_at, now))
            )
    audit(uow, actor, "case.resolved", f"case:{case_id}", at=now, chars=len(resolution))  # the text: on the case
    return load_case(uow, case_id)


def close_case(uow: UnitOfWork, case_id: int, *, actor: Actor, now: datetime) -> Case:
    """Closed: nothing more to do. Only a resolved case closes; approval requests still waiting are denied."""
    recovery_lock(uow)
    case, member = workable_case(uow, case_id, actor, "closing a case")
    if case.status is not Status.RESOLVED:
        raise Conflict(f"closing a case: case {case_id} is {case.status.value}; resolve it first")
    uow.execute(sa.update(_cases).where(_cases.c.id == case_id).values(status=Status.CLOSED.value, closed_at=now))
    approvals = tables.approvals
    uow.execute(
        sa.update(approvals)
        .where(approvals.c.case_id == case_id, approvals.c.status == "pending")
        .values(status="denied", decided_by=member.id, decided_at=now, reason="the case was closed")
    )
    audit(uow, actor, "case.closed", f"case:{case_id}", at=now)
    return load_case(uow, case_id)


def reopen_case(uow: UnitOfWork, case_id: int, *, reason: str, actor: Actor, now: datetime, playbook: Playbook) -> Case:
    """Open a resolved or closed case again: recorded on the same case, never a new one. Steps still to do
    that are anchored on the resolution wait for the next one."""
    reason = required_text("reason", reason)
    recovery_lock(uow)  # intake opens no case for this customer meanwhile
    case, _member = workable_case(uow, case_id, actor, "reopening a case")
    if case.status is Status.OPEN:
        raise Conflict(f"reopening a case: case {case_id} is open")
    other = open_case_of(uow, case.customer_id)
    if other is not None:
        raise Conflict(f"reopening a case: the customer's case {other.id} is open; add to that one")
    uow.execute(
        sa.update(_cases)
        .where(_cases.c.id == case_id)
        .values(status=Status.OPEN.value, resolved_at=None, closed_at=None, reopened=_cases.c.reopened + 1)
    )
    waiting = [step.kind.value for step in playbook.steps if step.anchor is Anchor.RESOLVED]
    if waiting:
        uow.execute(
            sa.update(_steps)
            .where(_steps.c.case_id == case_id, _steps.c.completed_at.is_(None), _steps.c.kind.in_(waiting))
            .values(due_at=None)
        )
    audit(uow, actor, "case.reopened", f"case:{case_id}", at=now, chars=len(reason), was=case.status.value)
    return load_case(uow, case_id)


def set_fault(uow: UnitOfWork, case_id: int, fault: Fault | str, *, actor: Actor, now: datetime) -> Case:
    """Record whose fault it was. The playbook stays the same whatever the answer."""
    try:
        value = Fault(fault)
    except ValueError:
        raise InvalidInput("fault", "company, customer or unknown") from None
    case, _member = workable_case(uow, case_id, actor, "recording the fault")
    uow.execute(sa.update(_cases).where(_cases.c.id == case_id).values(fault=value.value))
    audit(uow, actor, "case.fault", f"case:{case_id}", at=now, fault=value.value, was=case.fault.value)
    return load_case(uow, case_id)


# --- input -----------------------------------------------------------------------------------------------


def required_text(field: str, value: str | None, *, limit: int = 2_000) -> str:
    """The text stripped; InvalidInput naming `field` if it is empty or longer than `limit`."""
    value = (value or "").strip()
    if not value:
        raise InvalidInput(field, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(field, f"at most {limit} characters")
    return value


def _kind(value: StepKind | str) -> StepKind:
    try:
        return StepKind(value)
    except ValueError:
        known = ", ".join(kind.value for kind in StepKind)
        raise InvalidInput("step", f"unknown step {value!r}; the steps are {known}") from None


def _channel(value: str) -> str:
    if value not in _CHANNELS:
        raise InvalidInput("channel", f"one of {', '.join(_CHANNELS)}")
    return value
