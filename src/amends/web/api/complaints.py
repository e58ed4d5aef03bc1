"""POST /v1/complaints: the customer spoke. It opens a reactive case or joins the customer's open one, linked
to the incident it is about; sending the same complaint again changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from amends.access import Scope
from amends.recover.actors import Actor
from amends.web.api._inputs import Instant
from amends.web.api.cases import ComplaintOut
from amends.web.deps import DB, RecoveryState, in_transaction, require
from amends.web.errors import RECOVERY_ERRORS

router = APIRouter(prefix="/v1/complaints", tags=["complaints"])


class ComplaintIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=500, description="The system it came from, e.g. the helpdesk.")
    id: str = Field(min_length=1, max_length=500, description="Its id there; (source, id) is unique.")
    customer: str = Field(min_length=1, max_length=200, description="The customer id, as events name it.")
    channel: str = Field(description="email, phone, web, chat, letter, in_person, social, review or other.")
    text: str = Field(min_length=1, max_length=20000)
    reference: str | None = Field(
        default=None, max_length=500, description="What it is about: an order id, a booking reference, a job id."
    )
    received_at: Instant | None = Field(default=None, description="When the customer said it; default now.")


@router.post(
    "",
    response_model=ComplaintOut,
    status_code=201,
    responses={**RECOVERY_ERRORS, 200: {"description": "Received before; nothing changed."}},
)
async def post_complaint(
    body: ComplaintIn,
    response: Response,
    db: DB,
    recovery: RecoveryState,
    actor: Annotated[Actor, Depends(require(Scope.COMPLAINTS_WRITE))],
) -> ComplaintOut:
    """Record a complaint and put it on the customer's case."""
    now = datetime.now(UTC)
    complaint, new = await in_transaction(
        db,
        lambda uow: recovery.intake.file_complaint(
            uow,
            source=body.source,
            external_id=body.id,
            customer_id=body.customer,
            channel=body.channel,
            text=body.text,
            reference=body.reference,
            received_at=body.received_at,
            actor=actor,
            now=now,
        ),
    )
    if not new:
        response.status_code = 200
    return ComplaintOut.model_validate(complaint)
