"""/v1/approvals: the requests to grant above someone's authority, and a manager's decision on each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from amends.access import Scope
from amends.recover import remedies
from amends.recover.actors import Actor
from amends.store import UnitOfWork
from amends.web.api._inputs import Id
from amends.web.api.cases import ApprovalOut, LedgerEntryOut
from amends.web.deps import DB, Acting, OutreachState, RecoveryState, in_transaction, reading, require
from amends.web.errors import RECOVERY_ERRORS

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="Why: the requester reads it.")


@router.get("", response_model=list[ApprovalOut], responses=RECOVERY_ERRORS)
async def read_approvals(
    db: DB,
    actor: Annotated[Actor, Depends(require(Scope.CASES_READ))],
    status: Annotated[Literal["pending", "approved", "denied"], Query()] = "pending",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ApprovalOut]:
    """The approvals queue, oldest first (decided ones: the latest decision first): a manager sees all, others
    the requests on cases they can see."""
    return await reading(db, lambda uow: _queue(uow, actor, status, limit))


def _queue(uow: UnitOfWork, actor: Actor, status: str, limit: int) -> list[ApprovalOut]:
    return [
        ApprovalOut.model_validate(a) for a in remedies.list_approvals(uow, status=status, actor=actor, limit=limit)
    ]


@router.post("/{approval_id}/approve", response_model=LedgerEntryOut, status_code=201, responses=RECOVERY_ERRORS)
async def post_approve(
    approval_id: Id, body: DecisionIn, db: DB, actor: Acting, recovery: RecoveryState, outreach: OutreachState
) -> LedgerEntryOut:
    """Grant the request (managers and admins, within their own limit and the budget); the customer's
    confirmation of the remedy goes in the same transaction."""

    def run(uow: UnitOfWork) -> remedies.LedgerEntry:
        now = datetime.now(UTC)
        entry = remedies.approve(uow, approval_id, reason=body.reason, policy=recovery.policy, actor=actor, now=now)
        outreach.confirm_remedy(uow, entry, now=now)
        return entry

    return LedgerEntryOut.model_validate(await in_transaction(db, run))


@router.post("/{approval_id}/deny", response_model=ApprovalOut, responses=RECOVERY_ERRORS)
async def post_deny(approval_id: Id, body: DecisionIn, db: DB, actor: Acting) -> ApprovalOut:
    """Refuse the request, with a reason the requester reads."""
    approval = await in_transaction(
        db, lambda uow: remedies.deny(uow, approval_id, reason=body.reason, actor=actor, now=datetime.now(UTC))
    )
    return ApprovalOut.model_validate(approval)
