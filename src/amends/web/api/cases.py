"""/v1/cases: the recovery queue, one case with its story, and the work on it (ownership, steps, contacts,
status, remedies). Who may do what is decided in recover/, from the caller's key, never from the body."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from amends.access import Scope
from amends.errors import AmendsError, Conflict
from amends.outreach.outbox import ChannelName, MessageKind, list_messages
from amends.outreach.replies import list_replies
from amends.outreach.service import Composed, Outreach
from amends.recover import cases as work
from amends.recover import remedies
from amends.recover.actors import SYSTEM, Actor
from amends.recover.cases import Fault, Origin, Status
from amends.recover.playbooks import StepKind
from amends.recover.queries import CaseFilter, case_detail, list_cases, overdue_steps
from amends.store import UnitOfWork
from amends.web.api._inputs import Id, Instant
from amends.web.api.inbound import CaseReplyOut
from amends.web.api.messages import MessageOut
from amends.web.deps import DB, Acting, OutreachState, RecoveryState, in_transaction, reading, require
from amends.web.errors import RECOVERY_ERRORS

router = APIRouter(prefix="/v1", tags=["cases"])
_Reader = Annotated[Actor, Depends(require(Scope.CASES_READ))]


def _now() -> datetime:
    return datetime.now(UTC)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CaseOut(_Out):
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
    customer_spoke_first: bool | None = Field(description="The customer raised it before we contacted them.")
    reopened: int
    resolution: str | None
    held_out: bool = Field(
        description="Drawn into the holdout experiment: nothing proactive goes out unless the customer raises it."
    )
    holdout_lifted_at: datetime | None = Field(description="When a more severe incident lifted the holdout.")


class StepOut(_Out):
    kind: StepKind
    position: int
    title: str
    due_at: datetime | None = Field(
        description="Null while it is anchored on a resolution still to come, or the case is held out."
    )
    completed_at: datetime | None
    completed_by: str | None
    draft: str | None
    outcome: dict[str, Any] | None
    overdue: bool = False


class IncidentRefOut(_Out):
    id: int
    rule_id: str
    key: str
    severity: int
    status: str
    failure_at: datetime
    facts: dict[str, Any]


class HandoffOut(_Out):
    from_id: str | None
    to_id: str
    reason: str
    by_id: str | None
    at: datetime


class ContactOut(_Out):
    direction: str
    channel: str
    at: datetime
    by_id: str | None
    note: str | None


class ComplaintOut(_Out):
    id: int
    source: str
    external_id: str
    customer_id: str
    channel: str
    text: str
    reference: str | None
    received_at: datetime
    case_id: int
    incident_id: int | None


class ApprovalOut(_Out):
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


class LedgerEntryOut(_Out):
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


class CaseDetailOut(BaseModel):
    case: CaseOut
    steps: list[StepOut]
    incidents: list[IncidentRefOut]
    handoffs: list[HandoffOut]
    contacts: list[ContactOut]
    complaints: list[ComplaintOut]
    approvals: list[ApprovalOut]
    ledger: list[LedgerEntryOut]
    messages: list[MessageOut] = Field(description="What was written to the customer, newest first.")
    replies: list[CaseReplyOut] = Field(description="What the customer wrote back by email, newest first.")
    apology: ComposedOut | None = Field(
        description="The apology as it would go now (the saved draft, else the template's), until it is sent; "
        "null once sent, or when it cannot be written (see `apology_problem`)."
    )
    apology_problem: str | None = None


class ComposedOut(BaseModel):
    kind: MessageKind
    template: str = Field(description="The template it was written with.")
    language: str
    channel: ChannelName = Field(
        description="Where it would go: the customer's preference, else what they can receive."
    )
    recipient: str = Field(description="Empty for a card with no postal address: a task for staff.")
    subject: str
    text: str
    html: str | None
    edited: bool = Field(default=False, description="The text is the saved draft, not the template's.")
    profile_problems: list[str] = Field(
        default_factory=list, description="Values in the customer's profile that could not be used, and why."
    )

    @classmethod
    def of(cls, composed: Composed, *, draft: str | None = None) -> ComposedOut:
        rendered = composed.rendered
        edited = draft is not None and draft.strip() != rendered.text.strip()
        return cls(
            kind=composed.kind,
            template=composed.template_id,
            language=composed.language,
            channel=composed.channel,
            recipient=composed.recipient,
            subject=rendered.subject,
            text=draft if edited and draft is not None else rendered.text,
            html=None if edited else rendered.html,
            edited=edited,
            profile_problems=list(composed.profile.problems),
        )


class CasesOut(BaseModel):
    cases: list[CaseOut]
    next_cursor: str | None
    next: str | None


class OverdueOut(_Out):
    case_id: int
    customer_id: str
    owner_id: str | None
    kind: str
    title: str
    due_at: datetime
    overdue_by_seconds: float


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=100, description="The staff member who will own the case.")
    reason: str = Field(min_length=1, max_length=2000, description="Why: no pass-off without a reason.")


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=5000)
    text: str | None = Field(default=None, max_length=20000, description="empathise: the apology as sent.")
    channel: str | None = Field(default=None, description="empathise, manage_memory: how it reached the customer.")
    answer: Literal["made_it_right", "not_yet", "no_answer"] | None = Field(
        default=None, description="manage_memory: the customer's answer to 'did we make it right?'"
    )
    what: Literal["card", "invitation", "gift"] | None = Field(default=None, description="extend_experience.")


class DraftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=20000)


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    direction: Literal["outbound", "inbound"]
    channel: str = Field(min_length=1, max_length=20)
    note: str | None = Field(default=None, max_length=2000)
    at: Instant | None = None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resolution: str = Field(min_length=1, max_length=2000, description="What was done, in a sentence.")


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class FaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fault: Fault


class RemedyIn(BaseModel):
    """A remedy to grant (or to request approval for). The granter, their role and limit come from the key."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(min_length=1, max_length=100)
    amount: Decimal = Field(default=Decimal(0), description="In the kind's unit; 0 for an apology.")
    slot: str | None = Field(
        default=None,
        max_length=100,
        description="What this remedy is for: `incident-<id>`, one of the case's incidents (default: the first), "
        "or `case` for a case without incidents. One slot pays once: the same request again returns the same "
        "entry; after a reversal the slot can be granted anew.",
    )
    note: str | None = Field(default=None, max_length=2000)

    def grant(self) -> remedies.Grant:
        return remedies.Grant(self.kind, self.amount, self.slot, self.note)


class ProposalOut(BaseModel):
    kind: str
    amount: Decimal
    unit: str
    cash_value: Decimal
    policy: str
    reason: str
    your_limit_per_grant: Decimal | None = Field(
        description="The caller's limit for this kind, per grant; null when unlimited or for an integration key."
    )
    within_your_authority: bool | None = Field(
        description="Whether the caller can grant it on the spot (per grant, and with what they granted today); "
        "null for an integration key, which grants nothing."
    )


def _case_out(case: work.Case) -> CaseOut:
    return CaseOut.model_validate(case).model_copy(update={"customer_spoke_first": case.customer_spoke_first})


def _steps_out(steps: Sequence[work.CaseStep], now: datetime) -> list[StepOut]:
    return [StepOut.model_validate(step).model_copy(update={"overdue": step.is_overdue(now)}) for step in steps]


def _detail_out(uow: UnitOfWork, case_id: int, actor: Actor, outreach: Outreach) -> CaseDetailOut:
    detail = case_detail(uow, case_id, actor=actor)
    apology, problem = _apology(uow, detail.case, detail.steps, outreach)
    messages, _next = list_messages(uow, case_id=case_id, limit=1000)
    replies, _next = list_replies(uow, case_id=case_id, limit=1000)
    return CaseDetailOut(
        case=_case_out(detail.case),
        steps=_steps_out(detail.steps, _now()),
        incidents=[IncidentRefOut.model_validate(i) for i in detail.incidents],
        handoffs=[HandoffOut.model_validate(h) for h in detail.handoffs],
        contacts=[ContactOut.model_validate(c) for c in detail.contacts],
        complaints=[ComplaintOut.model_validate(c) for c in detail.complaints],
        approvals=[ApprovalOut.model_validate(a) for a in detail.approvals],
        ledger=[LedgerEntryOut.model_validate(e) for e in detail.ledger],
        messages=[MessageOut.model_validate(m) for m in messages],
        replies=[CaseReplyOut.model_validate(r) for r in replies],
        apology=apology,
        apology_problem=problem,
    )


def _apology(
    uow: UnitOfWork, case: work.Case, steps: Sequence[work.CaseStep], outreach: Outreach
) -> tuple[ComposedOut | None, str | None]:
    step = next((s for s in steps if s.kind is StepKind.EMPATHISE), None)
    if step is None or step.completed_at is not None or case.status is not Status.OPEN:
        return None, None
    try:
        composed = outreach.compose(uow, case, MessageKind.APOLOGY, now=_now())
    except AmendsError as exc:  # a template that cannot be written for this case: say so, show the rest
        return None, str(exc)
    return ComposedOut.of(composed, draft=step.draft), None


# --- reading ---------------------------------------------------------------------------------------------


@router.get("/cases", response_model=CasesOut, responses=RECOVERY_ERRORS)
async def read_cases(
    request: Request,
    db: DB,
    actor: _Reader,
    status: Annotated[Status | None, Query()] = None,
    origin: Annotated[Origin | None, Query()] = None,
    owner: Annotated[str | None, Query(max_length=100)] = None,
    team: Annotated[str | None, Query(max_length=100)] = None,
    customer: Annotated[str | None, Query(max_length=200)] = None,
    rule: Annotated[str | None, Query(max_length=100, description="Cases with an incident of this rule.")] = None,
    overdue: Annotated[bool, Query(description="Only cases with a step past its due time.")] = False,
    mine: Annotated[bool, Query(description="Only the caller's own cases (staff keys).")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CasesOut:
    """The cases the caller may see, newest first; every filter narrows. Staff see their own and their team's
    cases; managers, admins and integration keys with `cases:read` see all."""
    flt = CaseFilter(status, origin, owner, team, customer, rule, overdue, mine)
    page = await reading(db, lambda uow: list_cases(uow, flt, actor=actor, now=_now(), limit=limit, cursor=cursor))
    following = None
    if page.next_cursor is not None:
        following = str(request.url.include_query_params(cursor=page.next_cursor, limit=limit))
    return CasesOut(cases=[_case_out(c) for c in page.cases], next_cursor=page.next_cursor, next=following)


@router.get("/cases/{case_id}", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def read_case(case_id: Id, db: DB, actor: _Reader, outreach: OutreachState) -> CaseDetailOut:
    """One case: its incidents, steps with due times, handoffs, contacts, complaints, approvals and ledger."""
    return await reading(db, lambda uow: _detail_out(uow, case_id, actor, outreach))


@router.get("/steps/overdue", response_model=list[OverdueOut], responses=RECOVERY_ERRORS)
async def read_overdue(db: DB, actor: _Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[OverdueOut]:
    """Steps past their due time on cases that are not closed, the most overdue first."""
    now = _now()
    steps = await reading(db, lambda uow: overdue_steps(uow, actor=actor, now=now, limit=limit))
    return [
        OverdueOut.model_validate(s).model_copy(update={"overdue_by_seconds": (now - s.due_at).total_seconds()})
        for s in steps
    ]


@router.get("/cases/{case_id}/preview", response_model=ComposedOut, responses=RECOVERY_ERRORS)
async def read_preview(
    case_id: Id,
    db: DB,
    actor: _Reader,
    outreach: OutreachState,
    kind: Annotated[MessageKind, Query(description="apology, remedy, follow_up or thank_you.")] = MessageKind.APOLOGY,
    template: Annotated[
        str | None, Query(max_length=100, description="Any template of the step; default: the one chosen for the case.")
    ] = None,
    language: Annotated[str | None, Query(max_length=35, description="Default: the customer's.")] = None,
    channel: Annotated[ChannelName | None, Query(description="Default: the one the customer can receive.")] = None,
) -> ComposedOut:
    """A message of the case as it would be written now, with the case's facts: any template of the step, in
    any language. A remedy's confirmation is written for the case's latest grant (409 before there is one).
    Nothing is saved or sent."""

    def run(uow: UnitOfWork) -> ComposedOut:
        case = work.visible_case(uow, case_id, actor)
        remedy = None
        if kind is MessageKind.REMEDY:
            entries = remedies.case_entries(uow, case_id)
            reversed_ids = {e.reverses_id for e in entries}
            granted = [e for e in entries if e.reverses_id is None and e.id not in reversed_ids]
            if not granted:
                raise Conflict(f"case {case_id} has no remedy granted yet: nothing to confirm")
            remedy = granted[-1]
        composed = outreach.compose(
            uow, case, kind, now=_now(), remedy=remedy, template_id=template, language=language, channel=channel
        )
        return ComposedOut.of(composed)

    return await reading(db, run)


# --- working a case --------------------------------------------------------------------------------------


async def _act(
    db: DB, case_id: int, actor: Actor, outreach: Outreach, change: Callable[[UnitOfWork], object]
) -> CaseDetailOut:
    """Apply `change(uow)` and answer with the case as it is now."""

    def run(uow: UnitOfWork) -> CaseDetailOut:
        change(uow)  # checks that the actor may do it
        # The answer shows the case as the change left it, even when the change took it out of the actor's
        # sight (a handoff to another team).
        return _detail_out(uow, case_id, SYSTEM, outreach)

    return await in_transaction(db, run)


@router.post("/cases/{case_id}/assign", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def post_assign(case_id: Id, body: AssignIn, db: DB, actor: Acting, outreach: OutreachState) -> CaseDetailOut:
    """Hand the case to another staff member, with the reason (recorded as a handoff)."""
    return await _act(
        db,
        case_id,
        actor,
        outreach,
        lambda uow: work.assign(uow, case_id, body.to, reason=body.reason, actor=actor, now=_now()),
    )


@router.post("/cases/{case_id}/acknowledge", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def post_acknowledge(case_id: Id, db: DB, actor: Acting, outreach: OutreachState) -> CaseDetailOut:
    """The owner takes the case on (completes take_ownership); an unassigned case goes to the caller."""
    return await _act(db, case_id, actor, outreach, lambda uow: work.acknowledge(uow, case_id, actor=actor, now=_now()))


@router.put("/cases/{case_id}/draft", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def put_draft(case_id: Id, body: DraftIn, db: DB, actor: Acting, outreach: OutreachState) -> CaseDetailOut:
    """Save the apology's draft (the empathise step) before it is sent."""
    return await _act(
        db, case_id, actor, outreach, lambda uow: work.save_draft(uow, case_id, body.text, actor=actor, now=_now())
    )


@router.post("/cases/{case_id}/steps/{kind}/complete", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def post_complete(
    case_id: Id, kind: StepKind, body: CompleteIn, db: DB, actor: Acting, outreach: OutreachState
) -> CaseDetailOut:
    """Complete empathise: send the apology (`text`, else the saved draft, else the template's) on `channel`
    (email, sms or letter: amends delivers it; phone, chat, in_person: recorded only), by default the one the
    customer can receive. Complete manage_memory (the follow-up, with the customer's answer) or
    extend_experience (the card or invitation) done by hand: the scheduled message of the step that has not
    gone is cancelled. The other two steps complete through their own actions."""
    outcome: dict[str, Any] = {}
    for name in ("answer", "what"):
        value = getattr(body, name)
        if value is not None:
            outcome[name] = value

    def change(uow: UnitOfWork) -> None:
        if kind is StepKind.EMPATHISE:
            outreach.apologise(
                uow, case_id, actor=actor, now=_now(), text=body.text, channel=body.channel, note=body.note
            )
        elif kind in (StepKind.MANAGE_MEMORY, StepKind.EXTEND_EXPERIENCE):
            outreach.complete_later_step(
                uow, case_id, kind, actor=actor, now=_now(), note=body.note, outcome=outcome, channel=body.channel
            )
        else:
            work.complete_step(uow, case_id, kind, actor=actor, now=_now(), note=body.note, outcome=outcome)

    return await _act(db, case_id, actor, outreach, change)


@router.post("/cases/{case_id}/contacts", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def post_contact(case_id: Id, body: ContactIn, db: DB, actor: Acting, outreach: OutreachState) -> CaseDetailOut:
    """Record a contact with the customer about the case, either way."""
    return await _act(
        db,
        case_id,
        actor,
        outreach,
        lambda uow: work.record_contact(
            uow,
            case_id,
            direction=body.direction,
            channel=body.channel,
            note=body.note,
            actor=actor,
            now=_now(),
            at=body.at,
        ),
    )


@router.post("/cases/{case_id}/resolve", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def post_resolve(
    case_id: Id, body: ResolveIn, db: DB, actor: Acting, recovery: RecoveryState, outreach: OutreachState
) -> CaseDetailOut:
    """Resolve the case; the follow-up and the thank-you become due from now, and their messages are
    scheduled for then."""

    def change(uow: UnitOfWork) -> None:
        playbook = recovery.playbooks.get(work.load_case(uow, case_id).playbook)
        outreach.resolve(uow, case_id, resolution=body.resolution, actor=actor, now=_now(), playbook=playbook)

    return await _act(db, case_id, actor, outreach, change)


@router.post("/cases/{case_id}/close", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def post_close(case_id: Id, db: DB, actor: Acting, outreach: OutreachState) -> CaseDetailOut:
    """Close a resolved case."""
    return await _act(db, case_id, actor, outreach, lambda uow: work.close_case(uow, case_id, actor=actor, now=_now()))


@router.post("/cases/{case_id}/reopen", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def post_reopen(
    case_id: Id, body: ReasonIn, db: DB, actor: Acting, recovery: RecoveryState, outreach: OutreachState
) -> CaseDetailOut:
    """Reopen a resolved or closed case (recorded on it, never a new case); its follow-up and thank-you that
    have not gone are cancelled."""

    def change(uow: UnitOfWork) -> None:
        playbook = recovery.playbooks.get(work.load_case(uow, case_id).playbook)
        outreach.reopen(uow, case_id, reason=body.reason, actor=actor, now=_now(), playbook=playbook)

    return await _act(db, case_id, actor, outreach, change)


@router.put("/cases/{case_id}/fault", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def put_fault(case_id: Id, body: FaultIn, db: DB, actor: Acting, outreach: OutreachState) -> CaseDetailOut:
    """Record whose fault it was; the playbook does not change."""
    return await _act(
        db, case_id, actor, outreach, lambda uow: work.set_fault(uow, case_id, body.fault, actor=actor, now=_now())
    )


# --- remedies --------------------------------------------------------------------------------------------


@router.get("/cases/{case_id}/proposal", response_model=ProposalOut, responses=RECOVERY_ERRORS)
async def read_proposal(case_id: Id, db: DB, actor: _Reader, recovery: RecoveryState) -> ProposalOut:
    """What the remedy policy proposes for this case, and whether the caller may grant it on the spot."""
    policy = recovery.policy

    def run(uow: UnitOfWork) -> ProposalOut:
        proposal = remedies.propose(uow, case_id, policy=policy, actor=actor, now=_now())
        kind = policy.kind(proposal.kind)
        limit = None if actor.staff is None else policy.limit(actor.staff.role, kind.id)
        return ProposalOut(
            kind=kind.id,
            amount=proposal.amount,
            unit=kind.unit,
            cash_value=kind.cash_value(proposal.amount),
            policy=proposal.policy,
            reason=proposal.reason,
            your_limit_per_grant=None if limit is None else limit.per_grant,
            within_your_authority=None
            if actor.staff is None
            else remedies.within_authority(uow, actor.staff, kind, proposal.amount, policy=policy, now=_now()),
        )

    return await reading(db, run)


@router.post(
    "/cases/{case_id}/remedies",
    response_model=LedgerEntryOut,
    status_code=201,
    responses={**RECOVERY_ERRORS, 200: {"description": "The same grant was made before; this is its entry."}},
)
async def post_remedy(
    case_id: Id,
    body: RemedyIn,
    response: Response,
    db: DB,
    actor: Acting,
    recovery: RecoveryState,
    outreach: OutreachState,
) -> LedgerEntryOut:
    """Grant a remedy within the caller's authority: it is in the ledger at once, and the customer's
    confirmation of it in the outbox. Above the caller's limit: 403 with the limit, and `approval` says where
    to request one with the same body."""

    def run(uow: UnitOfWork) -> tuple[remedies.LedgerEntry, bool]:
        now = _now()
        entry, new = remedies.grant(uow, case_id, body.grant(), policy=recovery.policy, actor=actor, now=now)
        if new:
            outreach.confirm_remedy(uow, entry, now=now)
        return entry, new

    entry, new = await in_transaction(db, run)
    if not new:
        response.status_code = 200
    return LedgerEntryOut.model_validate(entry)


@router.post("/cases/{case_id}/no-remedy", response_model=CaseDetailOut, responses=RECOVERY_ERRORS)
async def post_no_remedy(case_id: Id, body: ReasonIn, db: DB, actor: Acting, outreach: OutreachState) -> CaseDetailOut:
    """Complete lessen_inconvenience without a remedy, saying why."""
    return await _act(
        db,
        case_id,
        actor,
        outreach,
        lambda uow: remedies.no_remedy(uow, case_id, reason=body.reason, actor=actor, now=_now()),
    )


@router.post(
    "/cases/{case_id}/approvals",
    response_model=ApprovalOut,
    status_code=202,
    responses={**RECOVERY_ERRORS, 200: {"description": "The same request is pending already."}},
)
async def post_approval_request(
    case_id: Id, body: RemedyIn, response: Response, db: DB, actor: Acting, recovery: RecoveryState
) -> ApprovalOut:
    """Ask a manager to grant a remedy above the caller's limit."""
    approval, new = await in_transaction(
        db,
        lambda uow: remedies.request_approval(
            uow, case_id, body.grant(), policy=recovery.policy, actor=actor, now=_now()
        ),
    )
    if not new:
        response.status_code = 200
    return ApprovalOut.model_validate(approval)
