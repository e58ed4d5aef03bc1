"""Remedies: proposed by the policy, granted by a person within their authority, approved by a manager above
it, and written to a ledger that never pays twice.

- **Propose**: the policy picks a remedy from the case's rule, severity and the customer's value.
- **Grant**: within the person's limit for the kind (per grant, and per day with what they granted today)
  and within the kind's monthly budget, the grant is a ledger entry at once. Above the limit it is refused
  (Forbidden, naming the limit), and the same remedy can be sent for approval.
- **Approve / deny**: a manager (or admin) decides with a reason; an approval is a ledger entry granted by
  the approver, within the approver's own limit and the budget.
- **Ledger**: append-only. The entry key is `case:<id>:<slot>`: the same grant submitted twice, or twenty
  times at once, is one entry (the recovery lock orders them, the unique key settles any race). A
  correction is a reversing entry (`reverse:<id>`), never an edit.

Every amount comes from the request and is checked here; the role, the limit and the granter come from the
actor, never from the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from amends.errors import Conflict, Forbidden, InvalidInput, NotFound
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.recover.cases import (
    Case,
    Status,
    complete_remedy_step,
    load_case,
    required_text,
    visibility,
    visible_case,
    workable_case,
)
from amends.recover.holdout import refuse_if_withheld
from amends.recover.lock import recovery_lock
from amends.recover.policy import Proposal, RemedyKind, RemedyPolicy
from amends.recover.roles import Role
from amends.recover.staff import StaffMember
from amends.recover.value import customer_value
from amends.store import UnitOfWork, tables

__all__ = [
    "AboveLimit",
    "Approval",
    "Grant",
    "LedgerEntry",
    "approve",
    "case_approvals",
    "case_entries",
    "deny",
    "entry_from_row",
    "get_approval",
    "get_entry",
    "grant",
    "list_approvals",
    "no_remedy",
    "propose",
    "request_approval",
    "reverse",
    "within_authority",
]

_ledger = tables.ledger
_approvals = tables.approvals
_links = tables.case_incidents
_incidents = tables.incidents
_MAX_AMOUNT = Decimal("100000000")
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() also takes "²"


class AboveLimit(Forbidden):
    """A grant above the person's authority: the limit, and that an approval can be requested."""

    def __init__(self, summary: str, *, kind: str, limit: Decimal | None, granted_today: Decimal, case_id: int) -> None:
        super().__init__(f"{summary}. Request an approval: POST /v1/cases/{case_id}/approvals with the same body")
        self.summary = summary  # what is above which limit, without where to ask (the console offers a button)
        self.kind = kind
        self.limit = limit
        self.granted_today = granted_today
        self.case_id = case_id

    @property
    def details(self) -> dict[str, Any]:
        """What a client needs to offer the approval: the limit, and where to send the request."""
        return {
            "kind": self.kind,
            "limit": None if self.limit is None else str(self.limit),
            "granted_today": str(self.granted_today),
            "approval": {"method": "POST", "path": f"/v1/cases/{self.case_id}/approvals"},
        }


@dataclass(frozen=True, slots=True)
class Grant:
    """What someone asks to give: a kind, an amount in its unit, for a slot of the case (one incident, or
    the case as a whole)."""

    kind: str
    amount: Decimal
    slot: str | None = None  # default: `incident-<id>` for the case's first incident, else `case`
    note: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    entry_key: str
    case_id: int
    slot: str
    customer_id: str
    incident_id: int | None
    kind: str
    amount: Decimal
    unit: str
    cash_value: Decimal
    policy: str
    granted_by: str
    approval_id: int | None
    reverses_id: int | None
    note: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Approval:
    id: int
    case_id: int
    slot: str
    incident_id: int | None
    kind: str
    amount: Decimal
    cash_value: Decimal
    policy: str
    note: str | None
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


# --- proposing -------------------------------------------------------------------------------------------


def propose(uow: UnitOfWork, case_id: int, *, policy: RemedyPolicy, actor: Actor, now: datetime) -> Proposal:
    """What the policy proposes for this case: by the rule of its most severe incident, the case's severity and
    the customer's value."""
    case = visible_case(uow, case_id, actor)
    return _proposal(uow, case, policy, now)


def _proposal(uow: UnitOfWork, case: Case, policy: RemedyPolicy, now: datetime) -> Proposal:
    rule_id = uow.execute(
        sa.select(_incidents.c.rule_id)
        .join(_links, _links.c.incident_id == _incidents.c.id)
        .where(_links.c.case_id == case.id)
        .order_by(_incidents.c.severity.desc(), _incidents.c.id)
        .limit(1)
    ).scalar()
    value = customer_value(uow, policy.value, case.customer_id, now)
    return policy.propose(rule_id=rule_id, severity=case.severity, value=value)


def within_authority(
    uow: UnitOfWork, member: StaffMember, kind: RemedyKind, amount: Decimal, *, policy: RemedyPolicy, now: datetime
) -> bool:
    """Whether `member` may grant `amount` of `kind` now on their own: their limit per grant and what they
    have granted today (the monthly budget aside)."""
    today = _granted_since(uow, kind.id, _start_of_day(now), granted_by=member.id)
    return policy.limit(member.role, kind.id).allows(amount, today)


# --- granting --------------------------------------------------------------------------------------------


def grant(
    uow: UnitOfWork, case_id: int, request: Grant, *, policy: RemedyPolicy, actor: Actor, now: datetime
) -> tuple[LedgerEntry, bool]:
    """Grant within the actor's authority: (the entry, whether it is new). The same slot granted before with
    the same kind and amount returns that entry; with another remedy it is a Conflict."""
    recovery_lock(uow)
    case, member = workable_case(uow, case_id, actor, "granting a remedy")
    kind, amount, slot, incident_id = _checked(uow, case, request, policy)
    existing, key = _slot_grants(uow, case.id, slot)
    if existing is not None:
        return _same_or_conflict(existing, kind, amount), False
    _granting_allowed(case, "granting a remedy")
    limit = policy.limit(member.role, kind.id)
    today = _granted_since(uow, kind.id, _start_of_day(now), granted_by=member.id)
    if not limit.allows(amount, today):
        raise _above_limit(member, kind, amount, limit.per_grant, limit.per_day, today, case.id)
    _within_budget(uow, policy, kind, amount, now)
    proposal = _proposal(uow, case, policy, now)
    entry = _write_entry(
        uow,
        key=key,
        case=case,
        slot=slot,
        incident_id=incident_id,
        kind=kind,
        amount=amount,
        policy_name=_policy_name(proposal, kind, amount),
        granted_by=member.id,
        approval_id=None,
        note=request.note,
        now=now,
    )
    audit(uow, actor, "remedy.granted", f"case:{case.id}", at=now, ledger_id=entry.id, kind=kind.id, amount=str(amount))
    return entry, True


def request_approval(
    uow: UnitOfWork, case_id: int, request: Grant, *, policy: RemedyPolicy, actor: Actor, now: datetime
) -> tuple[Approval, bool]:
    """Ask a manager to grant what is above the actor's limit: (the request, whether it is new)."""
    recovery_lock(uow)
    case, member = workable_case(uow, case_id, actor, "requesting an approval")
    kind, amount, slot, incident_id = _checked(uow, case, request, policy)
    if _slot_grants(uow, case.id, slot)[0] is not None:
        raise Conflict(f"slot {slot!r} of case {case.id} has been granted already")
    _granting_allowed(case, "requesting an approval")
    pending = uow.execute(
        sa.select(_approvals).where(
            _approvals.c.case_id == case.id, _approvals.c.slot == slot, _approvals.c.status == "pending"
        )
    ).first()
    if pending is not None:
        stored = _approval(pending)
        if stored.kind == kind.id and stored.amount == amount:
            return stored, False
        raise Conflict(f"an approval for slot {slot!r} of case {case.id} is pending (#{stored.id}); wait for it")
    proposal = _proposal(uow, case, policy, now)
    approval_id = uow.execute(
        sa.insert(_approvals)
        .values(
            case_id=case.id,
            slot=slot,
            incident_id=incident_id,
            kind=kind.id,
            amount=amount,
            cash_value=kind.cash_value(amount),
            policy=_policy_name(proposal, kind, amount),
            note=request.note,
            status="pending",
            requested_by=member.id,
            requested_at=now,
        )
        .returning(_approvals.c.id)
    ).scalar_one()
    audit(uow, actor, "approval.requested", f"approval:{approval_id}", at=now, case_id=case.id, kind=kind.id)
    return get_approval(uow, approval_id, actor=actor), True


def approve(
    uow: UnitOfWork, approval_id: int, *, reason: str, policy: RemedyPolicy, actor: Actor, now: datetime
) -> LedgerEntry:
    """A manager grants a pending request, with a reason, within their own limit and the budget. Nobody
    approves their own request: a second pair of eyes is the point."""
    member = actor.at_least(Role.MANAGER, "approving a remedy")
    reason = required_text("reason", reason)
    recovery_lock(uow)
    approval = _pending(uow, approval_id)
    if approval.requested_by == member.id:
        raise Forbidden("approving a remedy: nobody approves their own request")
    case = load_case(uow, approval.case_id)
    _granting_allowed(case, "approving a remedy")
    kind = policy.kind(approval.kind)
    existing, key = _slot_grants(uow, case.id, approval.slot)
    if existing is not None:
        raise Conflict(f"slot {approval.slot!r} of case {case.id} has been granted already; deny this request")
    limit = policy.limit(member.role, kind.id)
    today = _granted_since(uow, kind.id, _start_of_day(now), granted_by=member.id)
    if not limit.allows(approval.amount, today):
        raise _above_limit(member, kind, approval.amount, limit.per_grant, limit.per_day, today, case.id)
    _within_budget(uow, policy, kind, approval.amount, now)
    _decide(uow, approval.id, "approved", member.id, now, reason)
    entry = _write_entry(
        uow,
        key=key,
        case=case,
        slot=approval.slot,
        incident_id=approval.incident_id,
        kind=kind,
        amount=approval.amount,
        policy_name=approval.policy,
        granted_by=member.id,
        approval_id=approval.id,
        note=approval.note,
        now=now,
    )
    # The audit log is never erased, so it keeps no free text: the reason is on the approval, where erasure reaches it.
    audit(uow, actor, "approval.approved", f"approval:{approval.id}", at=now, ledger_id=entry.id, chars=len(reason))
    return entry


def deny(uow: UnitOfWork, approval_id: int, *, reason: str, actor: Actor, now: datetime) -> Approval:
    """A manager refuses a pending request, with a reason the requester reads."""
    member = actor.at_least(Role.MANAGER, "denying a remedy")
    reason = required_text("reason", reason)
    recovery_lock(uow)  # an approval of the same request waits, then finds it decided
    approval = _pending(uow, approval_id)
    _decide(uow, approval.id, "denied", member.id, now, reason)
    audit(uow, actor, "approval.denied", f"approval:{approval.id}", at=now, chars=len(reason))
    return get_approval(uow, approval.id, actor=actor)


def no_remedy(uow: UnitOfWork, case_id: int, *, reason: str, actor: Actor, now: datetime) -> Case:
    """Lessening the inconvenience needs no remedy here; the reason is recorded on the step."""
    reason = required_text("reason", reason)
    case, member = workable_case(uow, case_id, actor, "recording no remedy")
    _granting_allowed(case, "recording no remedy")
    complete_remedy_step(uow, case.id, member.id, now, {"remedy": None, "reason": reason})
    audit(uow, actor, "remedy.none", f"case:{case.id}", at=now, chars=len(reason))  # the reason: on the step
    return load_case(uow, case.id)


def reverse(uow: UnitOfWork, entry_id: int, *, reason: str, actor: Actor, now: datetime) -> LedgerEntry:
    """Correct an entry with a reversing one (the negated amount); an entry is reversed at most once."""
    member = actor.at_least(Role.MANAGER, "reversing a ledger entry")
    reason = required_text("reason", reason)
    recovery_lock(uow)
    original = get_entry(uow, entry_id)
    if original.reverses_id is not None:
        raise Conflict(f"entry {entry_id} is itself a reversal")
    key = f"reverse:{entry_id}"
    if _entry_by_key(uow, key) is not None:
        raise Conflict(f"entry {entry_id} has been reversed already")
    entry_id_new = uow.execute(
        sa.insert(_ledger)
        .values(
            entry_key=key,
            case_id=original.case_id,
            slot=original.slot,
            customer_id=original.customer_id,
            incident_id=original.incident_id,
            kind=original.kind,
            amount=-original.amount,
            unit=original.unit,
            cash_value=-original.cash_value,
            policy=original.policy,
            granted_by=member.id,
            approval_id=None,
            reverses_id=original.id,
            note=reason,
            at=now,
        )
        .returning(_ledger.c.id)
    ).scalar_one()
    audit(uow, actor, "ledger.reversed", f"ledger:{entry_id}", at=now, reversal_id=entry_id_new, chars=len(reason))
    return get_entry(uow, entry_id_new)


# --- reading ---------------------------------------------------------------------------------------------


def get_entry(uow: UnitOfWork, entry_id: int) -> LedgerEntry:
    row = uow.execute(sa.select(_ledger).where(_ledger.c.id == entry_id)).first()
    if row is None:
        raise NotFound(f"no ledger entry {entry_id}")
    return entry_from_row(row)


def get_approval(uow: UnitOfWork, approval_id: int, *, actor: Actor) -> Approval:
    """The approval request; NotFound unless the actor may see its case."""
    approval = get_approval_unchecked(uow, approval_id)
    visible_case(uow, approval.case_id, actor)
    return approval


def get_approval_unchecked(uow: UnitOfWork, approval_id: int) -> Approval:
    row = uow.execute(sa.select(_approvals).where(_approvals.c.id == approval_id)).first()
    if row is None:
        raise NotFound(f"no approval {approval_id}")
    return _approval(row)


def list_approvals(uow: UnitOfWork, *, status: str, actor: Actor, limit: int = 100) -> list[Approval]:
    """Approval requests in this status on the cases the actor may see: pending ones oldest first (the queue),
    decided ones the latest decision first."""
    order = (
        (_approvals.c.requested_at, _approvals.c.id)
        if status == "pending"
        else (_approvals.c.decided_at.desc(), _approvals.c.id.desc())
    )
    query = (
        sa.select(_approvals)
        .join(tables.cases, tables.cases.c.id == _approvals.c.case_id)
        .where(_approvals.c.status == status)
        .order_by(*order)
        .limit(limit)
    )
    visible = visibility(actor)
    if visible is not None:
        query = query.where(visible)
    return [_approval(row) for row in uow.execute(query)]


def case_entries(uow: UnitOfWork, case_id: int) -> list[LedgerEntry]:
    query = sa.select(_ledger).where(_ledger.c.case_id == case_id).order_by(_ledger.c.id)
    return [entry_from_row(r) for r in uow.execute(query)]


def case_approvals(uow: UnitOfWork, case_id: int) -> list[Approval]:
    query = sa.select(_approvals).where(_approvals.c.case_id == case_id).order_by(_approvals.c.id)
    return [_approval(r) for r in uow.execute(query)]


# --- inside ----------------------------------------------------------------------------------------------


def _checked(
    uow: UnitOfWork, case: Case, request: Grant, policy: RemedyPolicy
) -> tuple[RemedyKind, Decimal, str, int | None]:
    kind = policy.kind(request.kind)
    amount = _amount(request.amount)
    if not kind.needs_amount and amount != 0:
        raise InvalidInput("amount", f"{kind.label} has no amount; send 0")
    if kind.needs_amount and amount <= 0:
        raise InvalidInput("amount", f"must be more than 0 {kind.unit}")
    incidents = [
        int(i)
        for i in uow.execute(
            sa.select(_links.c.incident_id).where(_links.c.case_id == case.id).order_by(_links.c.incident_id)
        ).scalars()
    ]
    slot = request.slot or (f"incident-{incidents[0]}" if incidents else "case")
    if slot == "case":
        if incidents:
            raise InvalidInput("slot", f"case {case.id} has incidents; a remedy is for one of them, incident-<id>")
        return kind, amount, slot, None
    number = slot.removeprefix("incident-")
    if number == slot or not _DIGITS.fullmatch(number) or int(number) not in incidents:
        known = ", ".join(f"incident-{i}" for i in incidents) or "case"
        raise InvalidInput("slot", f"{slot[:100]!r} is not one of this case's slots: {known}")
    return kind, amount, f"incident-{int(number)}", int(number)


def _amount(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput("amount", "not a number") from None
    if not amount.is_finite():
        raise InvalidInput("amount", "not a number")
    if amount < 0:
        raise InvalidInput("amount", "must not be negative; a correction is a reversal of the entry")
    if amount > _MAX_AMOUNT:  # before quantize, which fails on numbers this large
        raise InvalidInput("amount", f"at most {_MAX_AMOUNT}")
    if amount != amount.quantize(Decimal("0.01")):
        raise InvalidInput("amount", "at most two decimal places")
    return amount.quantize(Decimal("0.01"))


def _granting_allowed(case: Case, doing: str) -> None:
    if case.status is Status.CLOSED:
        raise Conflict(f"{doing}: case {case.id} is closed")
    refuse_if_withheld(case, doing)


def _slot_grants(uow: UnitOfWork, case_id: int, slot: str) -> tuple[LedgerEntry | None, str]:
    """The slot's grant in force (not reversed), if any, and the key the next grant of the slot gets:
    `case:<id>:<slot>` for the first, `…#2`, `…#3` after each reversal. A slot pays once at a time."""
    reversal = _ledger.alias("reversal")
    rows = uow.execute(
        sa.select(_ledger, reversal.c.id.label("reversed_by"))
        .outerjoin(reversal, reversal.c.reverses_id == _ledger.c.id)
        .where(_ledger.c.case_id == case_id, _ledger.c.slot == slot, _ledger.c.reverses_id.is_(None))
        .order_by(_ledger.c.id)
    ).all()
    in_force = next((entry_from_row(row) for row in rows if row.reversed_by is None), None)
    key = f"case:{case_id}:{slot}" + (f"#{len(rows) + 1}" if rows else "")
    return in_force, key


def _entry_by_key(uow: UnitOfWork, key: str) -> LedgerEntry | None:
    row = uow.execute(sa.select(_ledger).where(_ledger.c.entry_key == key)).first()
    return None if row is None else entry_from_row(row)


def _same_or_conflict(entry: LedgerEntry, kind: RemedyKind, amount: Decimal) -> LedgerEntry:
    if entry.kind == kind.id and entry.amount == amount:
        return entry
    raise Conflict(
        f"slot {entry.slot!r} of case {entry.case_id} was granted already ({entry.amount} {entry.unit} {entry.kind},"
        f" ledger entry {entry.id}); one slot pays once"
    )


def _start_of_day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _start_of_month(now: datetime) -> datetime:
    return _start_of_day(now).replace(day=1)


def _total(column: sa.ColumnElement[Decimal]) -> sa.ColumnElement[Decimal]:
    """The sum of an amount column: summed in SQL as the stored hundredths, read back as a Decimal by the
    column's own type."""
    return sa.func.coalesce(sa.func.sum(column), 0)


def _granted_since(uow: UnitOfWork, kind: str, since: datetime, *, granted_by: str) -> Decimal:
    """What `granted_by` granted of `kind` since `since`: their grants, a reversal giving nothing back (the
    daily limit is about what a person decided, not what stayed granted)."""
    query = sa.select(_total(_ledger.c.amount)).where(
        _ledger.c.kind == kind,
        _ledger.c.at >= since,
        _ledger.c.granted_by == granted_by,
        _ledger.c.reverses_id.is_(None),
    )
    return Decimal(uow.execute(query).scalar_one())


def _spent_in_month(uow: UnitOfWork, kind: str, month: datetime) -> Decimal:
    """The month's net spend of `kind`: grants made in it, less the reversals of those grants (whenever the
    reversal is made). A reversal of an earlier month's grant frees that month's budget, not this one's."""
    grants = sa.select(_total(_ledger.c.amount)).where(
        _ledger.c.kind == kind, _ledger.c.at >= month, _ledger.c.reverses_id.is_(None)
    )
    original = _ledger.alias("original")
    reversals = (
        sa.select(_total(_ledger.c.amount))
        .select_from(_ledger.join(original, original.c.id == _ledger.c.reverses_id))
        .where(_ledger.c.kind == kind, original.c.at >= month)
    )
    return Decimal(uow.execute(grants).scalar_one()) + Decimal(uow.execute(reversals).scalar_one())


def _within_budget(uow: UnitOfWork, policy: RemedyPolicy, kind: RemedyKind, amount: Decimal, now: datetime) -> None:
    budget = policy.monthly_budget(kind.id)
    if budget is None:
        return
    spent = _spent_in_month(uow, kind.id, _start_of_month(now))
    if spent + amount > budget:
        left = max(budget - spent, Decimal(0))
        raise Conflict(
            f"the monthly budget for {kind.label} is {budget} {kind.unit}; {spent} is granted this month, "
            f"{left} is left, and this grant is {amount}"
        )


def _above_limit(
    member: StaffMember,
    kind: RemedyKind,
    amount: Decimal,
    per_grant: Decimal | None,
    per_day: Decimal | None,
    today: Decimal,
    case_id: int,
) -> AboveLimit:
    unit = f" {kind.unit}" if kind.unit else ""
    limit: Decimal | None
    if per_grant is not None and amount > per_grant:
        what = f"your limit as {member.role.value} is {per_grant}{unit} of {kind.label} per grant"
        limit = per_grant
    else:
        what = f"your daily limit as {member.role.value} is {per_day}{unit} of {kind.label}"
        what += f", and you granted {today} today"
        limit = per_day
    return AboveLimit(
        f"{amount}{unit} is above your authority: {what}",
        kind=kind.id,
        limit=limit,
        granted_today=today,
        case_id=case_id,
    )


def _policy_name(proposal: Proposal, kind: RemedyKind, amount: Decimal) -> str:
    """The proposal the grant follows, when it gives that kind and no more than proposed; else discretion."""
    if proposal.kind == kind.id and amount <= proposal.amount:
        return proposal.policy
    return "discretion"


def _write_entry(
    uow: UnitOfWork,
    *,
    key: str,
    case: Case,
    slot: str,
    incident_id: int | None,
    kind: RemedyKind,
    amount: Decimal,
    policy_name: str,
    granted_by: str,
    approval_id: int | None,
    note: str | None,
    now: datetime,
) -> LedgerEntry:
    statement = (
        sa.insert(_ledger)
        .values(
            entry_key=key,
            case_id=case.id,
            slot=slot,
            customer_id=case.customer_id,
            incident_id=incident_id,
            kind=kind.id,
            amount=amount,
            unit=kind.unit,
            cash_value=kind.cash_value(amount),
            policy=policy_name,
            granted_by=granted_by,
            approval_id=approval_id,
            reverses_id=None,
            note=note,
            at=now,
        )
        .returning(_ledger.c.id)
    )
    entry_id = uow.execute(statement).scalar_one()
    # A request still waiting for this slot is answered by the grant.
    uow.execute(
        sa.update(_approvals)
        .where(_approvals.c.case_id == case.id, _approvals.c.slot == slot, _approvals.c.status == "pending")
        .values(status="denied", decided_by=granted_by, decided_at=now, reason=f"granted: ledger entry {entry_id}")
    )
    complete_remedy_step(
        uow, case.id, granted_by, now, {"remedy": {"ledger_id": entry_id, "kind": kind.id, "amount": str(amount)}}
    )
    return get_entry(uow, entry_id)


def _pending(uow: UnitOfWork, approval_id: int) -> Approval:
    approval = get_approval_unchecked(uow, approval_id)
    if approval.status != "pending":
        raise Conflict(f"approval {approval_id} was {approval.status} by {approval.decided_by}")
    return approval


def _decide(uow: UnitOfWork, approval_id: int, status: str, by: str, now: datetime, reason: str | None) -> None:
    decided = uow.execute(
        sa.update(_approvals)
        .where(_approvals.c.id == approval_id, _approvals.c.status == "pending")
        .values(status=status, decided_by=by, decided_at=now, reason=reason)
    ).rowcount
    if decided != 1:
        raise Conflict(f"approval {approval_id} was decided by someone else meanwhile")


def entry_from_row(row: sa.Row[Any]) -> LedgerEntry:
    return LedgerEntry(
        row.id,
        row.entry_key,
        row.case_id,
        row.slot,
        row.customer_id,
        row.incident_id,
        row.kind,
        row.amount,
        row.unit,
        row.cash_value,
        row.policy,
        row.granted_by,
        row.approval_id,
        row.reverses_id,
        row.note,
        row.at,
    )


def _approval(row: sa.Row[Any]) -> Approval:
    return Approval(
        row.id,
        row.case_id,
        row.slot,
        row.incident_id,
        row.kind,
        row.amount,
        row.cash_value,
        row.policy,
        row.note,
        row.status,
        row.requested_by,
        row.requested_at,
        row.decided_by,
        row.decided_at,
        row.reason,
    )
