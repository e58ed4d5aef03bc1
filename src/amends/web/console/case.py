"""One case, as the person working it sees it: what happened in plain words, the customer's value and history,
the five steps with their due times, the apology to edit and send, the proposed remedy beside the person's own
authority limit (grant it, or ask a manager), and everything said and done on it.

Every action is a form that posts back here; recover/ and outreach/ decide whether this person may do it, as
for their API key. A refused action shows the page again with the reason, and what was typed is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from amends.detect.risk.registry import latest_score
from amends.errors import AmendsError, InvalidInput
from amends.feedback.records import customer_feedback
from amends.outreach.outbox import MessageKind, list_messages
from amends.outreach.replies import list_replies
from amends.outreach.service import Outreach
from amends.recover import cases as work
from amends.recover import remedies
from amends.recover.cases import Status
from amends.recover.playbooks import Playbook, StepKind
from amends.recover.policy import CustomerValue, Limit, Proposal, RemedyKind
from amends.recover.queries import CaseDetail, case_detail
from amends.recover.roles import Role
from amends.recover.service import Recovery
from amends.recover.staff import StaffMember, list_staff
from amends.recover.value import customer_value
from amends.store import UnitOfWork, tables
from amends.web.console._base import ConsoleUser, Signed, form_of, reading, redirect, render, rule_titles, writing
from amends.web.errors import status_of

__all__ = ["router"]

router = APIRouter(prefix="/console/cases", include_in_schema=False)

# What a finished action says on the page it returns to: fixed texts, so nothing from the URL is shown.
_DONE = {
    "acknowledged": "You own this case now.",
    "draft": "The apology's draft is saved.",
    "apology": "The apology is on its way.",
    "granted": "The remedy is granted and in the ledger; the customer's confirmation is on its way.",
    "approval": "A manager has been asked to approve the remedy.",
    "no-remedy": "Recorded: no remedy, with your reason.",
    "assigned": "The case has a new owner.",
    "resolved": "The case is resolved; the follow-up and the thank-you are scheduled.",
    "closed": "The case is closed.",
    "reopened": "The case is open again.",
}
_CHANNELS = ("email", "sms", "letter", "phone", "chat", "in_person")


@dataclass(frozen=True, slots=True)
class _Remedy:
    proposal: Proposal
    kind: RemedyKind
    limit: Limit
    within: bool
    kinds: tuple[RemedyKind, ...]


@dataclass(frozen=True, slots=True)
class _History:
    value: CustomerValue
    currency: str
    cases: int
    incidents: int
    feedback: int


def _now() -> datetime:
    return datetime.now(UTC)


def _services(request: Request) -> tuple[Recovery, Outreach]:
    state = request.app.state
    return state.recovery, state.outreach


def _view(uow: UnitOfWork, case_id: int, user: ConsoleUser, recovery: Recovery, outreach: Outreach) -> dict[str, Any]:
    """Everything the case page shows, read in one transaction."""
    detail = case_detail(uow, case_id, actor=user.actor)
    case = detail.case
    now = _now()
    policy = recovery.policy
    value = customer_value(uow, policy.value, case.customer_id, now)
    remedy = None
    if case.status is Status.OPEN:
        proposal = remedies.propose(uow, case_id, policy=policy, actor=user.actor, now=now)
        kind = policy.kind(proposal.kind)
        remedy = _Remedy(
            proposal,
            kind,
            policy.limit(user.member.role, kind.id),
            remedies.within_authority(uow, user.member, kind, proposal.amount, policy=policy, now=now),
            tuple(policy.kinds.values()),
        )
    apology, apology_problem = None, None
    empathise = next((s for s in detail.steps if s.kind is StepKind.EMPATHISE), None)
    if empathise is not None and empathise.completed_at is None and case.status is Status.OPEN:
        try:
            composed = outreach.compose(uow, case, MessageKind.APOLOGY, now=now)
            apology = {
                "subject": composed.rendered.subject,
                "text": empathise.draft if empathise.draft is not None else composed.rendered.text,
                "channel": composed.channel,
                "recipient": composed.recipient,
                "edited": empathise.draft is not None,
            }
        except AmendsError as exc:
            apology_problem = str(exc)
    messages, _next = list_messages(uow, case_id=case_id, limit=200)
    # What the customer wrote to us from a little before the case on: the feedback that opened it, and since.
    feedback = customer_feedback(uow, case.customer_id, since=case.opened_at - timedelta(days=7))
    replies, _next_reply = list_replies(uow, case_id=case_id, limit=200)
    history = _History(value, policy.currency, *_counts(uow, case.customer_id))
    assignable: list[StaffMember] = []
    if user.member.role.at_least(Role.LEAD):
        assignable = [m for m in list_staff(uow, active=True) if m.id != case.owner_id]
    return {
        "detail": detail,
        "risk": latest_score(uow, case.customer_id),
        "case": case,
        "remedy": remedy,
        "apology": apology,
        "apology_problem": apology_problem,
        "messages": messages,
        "replies": replies,
        "feedback": feedback,
        "history": history,
        "assignable": assignable,
        "channels": _CHANNELS,
        "may_work": _may_work(detail, user),
    }


def _may_work(detail: CaseDetail, user: ConsoleUser) -> bool:
    case = detail.case
    return case.owner_id in (None, user.member.id) or user.member.role.at_least(Role.LEAD)


def _counts(uow: UnitOfWork, customer_id: str) -> tuple[int, int, int]:
    def count(table: sa.Table) -> int:
        return int(
            uow.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.customer_id == customer_id)
            ).scalar_one()
        )

    return count(tables.cases), count(tables.incidents), count(tables.feedback)


async def _page(
    request: Request,
    user: ConsoleUser,
    case_id: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    typed: Mapping[str, str] | None = None,
) -> HTMLResponse:
    recovery, outreach = _services(request)
    view = await reading(request, lambda uow: _view(uow, case_id, user, recovery, outreach))
    return render(
        request, "case.html", user, status=status, notice=notice, error=error, typed=dict(typed or {}),
        rules=rule_titles(request), **view,
    )  # fmt: skip


@router.get("/{case_id}", response_class=HTMLResponse)
async def case_page(request: Request, user: Signed, case_id: int, done: str | None = None) -> HTMLResponse:
    return await _page(request, user, case_id, notice=_DONE.get(done or ""))


async def _act(
    request: Request,
    user: ConsoleUser,
    case_id: int,
    done: str,
    change: Callable[[UnitOfWork, Mapping[str, str]], object],
) -> Response:
    """Check the form, apply `change` in one transaction, and show the case again: with `done`'s notice, or
    with the reason it was refused (and what was typed)."""
    fields = await form_of(request, user)
    try:
        await writing(request, lambda uow: change(uow, fields))
    except AmendsError as exc:
        return await _page(request, user, case_id, error=str(exc), status=status_of(exc), typed=fields)
    return redirect(f"/console/cases/{case_id}?done={done}#top")


def _playbook(uow: UnitOfWork, recovery: Recovery, case_id: int) -> Playbook:
    """The playbook the case runs (resolving and reopening schedule its later steps)."""
    return recovery.playbooks.get(work.load_case(uow, case_id).playbook)


def _text(fields: Mapping[str, str], name: str, *, required: bool = True, limit: int = 10_000) -> str | None:
    value = fields.get(name, "").strip()
    if not value:
        if required:
            raise InvalidInput(name, "is required")
        return None
    if len(value) > limit:
        raise InvalidInput(name, f"at most {limit:,} characters")
    return value


def _amount(fields: Mapping[str, str]) -> Decimal:
    raw = fields.get("amount", "").strip().replace(",", ".")
    try:
        amount = Decimal(raw or "0")
    except InvalidOperation:
        raise InvalidInput("amount", f"not a number: {raw[:20]!r}") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput("amount", "a number of zero or more")
    return amount


@router.post("/{case_id}/acknowledge")
async def acknowledge(request: Request, user: Signed, case_id: int) -> Response:
    return await _act(
        request, user, case_id, "acknowledged",
        lambda uow, _f: work.acknowledge(uow, case_id, actor=user.actor, now=_now()),
    )  # fmt: skip


@router.post("/{case_id}/draft")
async def save_draft(request: Request, user: Signed, case_id: int) -> Response:
    return await _act(
        request, user, case_id, "draft",
        lambda uow, f: work.save_draft(uow, case_id, _text(f, "text") or "", actor=user.actor, now=_now()),
    )  # fmt: skip


@router.post("/{case_id}/apology")
async def send_apology(request: Request, user: Signed, case_id: int) -> Response:
    outreach = request.app.state.outreach

    def send(uow: UnitOfWork, fields: Mapping[str, str]) -> None:
        channel = fields.get("channel") or None
        if channel is not None and channel not in _CHANNELS:
            raise InvalidInput("channel", f"one of {', '.join(_CHANNELS)}")
        outreach.apologise(
            uow, case_id, actor=user.actor, now=_now(), text=_text(fields, "text"), channel=channel,
            note=_text(fields, "note", required=False, limit=1000),
        )  # fmt: skip

    return await _act(request, user, case_id, "apology", send)


@router.post("/{case_id}/remedy")
async def remedy(request: Request, user: Signed, case_id: int) -> Response:
    """Grant the remedy, or (the other button of the same form) ask a manager to approve it."""
    recovery: Recovery = request.app.state.recovery
    outreach: Outreach = request.app.state.outreach
    fields = await form_of(request, user)
    asking = fields.get("action") == "request_approval"

    def change(uow: UnitOfWork, form: Mapping[str, str]) -> None:
        kind = form.get("kind", "")
        grant = remedies.Grant(kind, _amount(form), note=_text(form, "note", required=False, limit=1000))
        now = _now()
        if asking:
            remedies.request_approval(uow, case_id, grant, policy=recovery.policy, actor=user.actor, now=now)
            return
        entry, new = remedies.grant(uow, case_id, grant, policy=recovery.policy, actor=user.actor, now=now)
        if new:
            outreach.confirm_remedy(uow, entry, now=now)

    try:
        await writing(request, lambda uow: change(uow, fields))
    except remedies.AboveLimit as exc:
        message = f"{exc.summary}. Ask a manager to approve it instead (the button beside Grant)."
        return await _page(request, user, case_id, error=message, status=403, typed=fields)
    except AmendsError as exc:
        return await _page(request, user, case_id, error=str(exc), status=status_of(exc), typed=fields)
    return redirect(f"/console/cases/{case_id}?done={'approval' if asking else 'granted'}#top")


@router.post("/{case_id}/no-remedy")
async def no_remedy(request: Request, user: Signed, case_id: int) -> Response:
    return await _act(
        request, user, case_id, "no-remedy",
        lambda uow, f: remedies.no_remedy(uow, case_id, reason=_text(f, "reason", limit=1000) or "",
                                          actor=user.actor, now=_now()),
    )  # fmt: skip


@router.post("/{case_id}/assign")
async def assign(request: Request, user: Signed, case_id: int) -> Response:
    """Hand the case over: leads and up (docs/console.md), as the page offers it; a form posted anyway by an
    agent is refused, even for a case of their own (recover/cases.py decides)."""

    def hand_over(uow: UnitOfWork, fields: Mapping[str, str]) -> None:
        to, reason = _text(fields, "to", limit=100) or "", _text(fields, "reason", limit=1000) or ""
        work.assign(uow, case_id, to, reason=reason, actor=user.actor, now=_now())

    return await _act(request, user, case_id, "assigned", hand_over)


@router.post("/{case_id}/resolve")
async def resolve(request: Request, user: Signed, case_id: int) -> Response:
    recovery: Recovery = request.app.state.recovery
    outreach: Outreach = request.app.state.outreach

    def change(uow: UnitOfWork, fields: Mapping[str, str]) -> None:
        resolution = _text(fields, "resolution", limit=2000) or ""
        playbook = _playbook(uow, recovery, case_id)
        outreach.resolve(uow, case_id, resolution=resolution, actor=user.actor, now=_now(), playbook=playbook)

    return await _act(request, user, case_id, "resolved", change)


@router.post("/{case_id}/close")
async def close(request: Request, user: Signed, case_id: int) -> Response:
    return await _act(
        request, user, case_id, "closed", lambda uow, _f: work.close_case(uow, case_id, actor=user.actor, now=_now())
    )


@router.post("/{case_id}/reopen")
async def reopen(request: Request, user: Signed, case_id: int) -> Response:
    recovery: Recovery = request.app.state.recovery
    outreach: Outreach = request.app.state.outreach

    def change(uow: UnitOfWork, fields: Mapping[str, str]) -> None:
        reason = _text(fields, "reason", limit=1000) or ""
        playbook = _playbook(uow, recovery, case_id)
        outreach.reopen(uow, case_id, reason=reason, actor=user.actor, now=_now(), playbook=playbook)

    return await _act(request, user, case_id, "reopened", change)
