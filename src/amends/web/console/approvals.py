"""Approvals: the requests to grant above someone's authority, for managers to approve or deny with a reason.
Only managers and admins reach the page; the decision itself is checked again in recover/remedies.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from amends.errors import AmendsError, InvalidInput
from amends.outreach.service import Outreach
from amends.recover import remedies
from amends.recover.roles import Role
from amends.recover.service import Recovery
from amends.store import UnitOfWork
from amends.web.console._base import ConsoleUser, Signed, form_of, reading, redirect, render, writing
from amends.web.errors import status_of

__all__ = ["router"]

router = APIRouter(prefix="/console/approvals", include_in_schema=False)
_DONE = {"approved": "Approved: the remedy is in the ledger and the customer is told.", "denied": "Denied."}
_Status = Literal["pending", "approved", "denied"]


async def _page(
    request: Request, user: ConsoleUser, status: _Status, *, notice: str | None = None,
    error: str | None = None, code: int = 200,
) -> HTMLResponse:  # fmt: skip
    user.actor.at_least(Role.MANAGER, "deciding on approvals")
    approvals = await reading(
        request, lambda uow: remedies.list_approvals(uow, status=status, actor=user.actor, limit=200)
    )
    return render(
        request, "approvals.html", user, status=code, approvals=approvals, shown=status, notice=notice, error=error
    )


@router.get("", response_class=HTMLResponse)
async def approvals_page(
    request: Request, user: Signed, status: Annotated[_Status, Query()] = "pending", done: str | None = None
) -> HTMLResponse:
    return await _page(request, user, status, notice=_DONE.get(done or ""))


@router.post("/{approval_id}")
async def decide(request: Request, user: Signed, approval_id: int) -> Response:
    """Approve or deny (the button pressed), with the reason the requester reads."""
    fields = await form_of(request, user)
    recovery: Recovery = request.app.state.recovery
    outreach: Outreach = request.app.state.outreach
    decision = fields.get("decision")
    approving = decision == "approve"
    reason = fields.get("reason", "").strip()[:2000]

    def run(uow: UnitOfWork) -> None:
        if decision not in ("approve", "deny"):
            raise InvalidInput("decision", "approve or deny")
        now = datetime.now(UTC)
        if approving:
            entry = remedies.approve(uow, approval_id, reason=reason, policy=recovery.policy, actor=user.actor, now=now)
            outreach.confirm_remedy(uow, entry, now=now)
        else:
            remedies.deny(uow, approval_id, reason=reason, actor=user.actor, now=now)

    try:
        await writing(request, run)
    except AmendsError as exc:
        return await _page(request, user, "pending", error=str(exc), code=status_of(exc))
    return redirect(f"/console/approvals?done={'approved' if approving else 'denied'}")
