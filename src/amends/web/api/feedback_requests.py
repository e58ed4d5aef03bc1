"""/v1/feedback-requests: a feedback request for one interaction, its link and its QR code, for printing on an
invoice or a receipt; optionally sent to the customer through outreach as well."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Annotated, Literal

import segno
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from amends.access import Scope
from amends.feedback.records import Scale
from amends.feedback.requests import (
    AskingPolicy,
    FeedbackRequest,
    create_request,
    get_request,
    language_of,
    send_request,
)
from amends.outreach.service import Outreach
from amends.recover.actors import Actor
from amends.store import UnitOfWork
from amends.web.api._inputs import Id
from amends.web.deps import DB, AppSettings, OutreachState, in_transaction, reading, require

__all__ = ["router"]

router = APIRouter(prefix="/v1/feedback-requests", tags=["feedback"])
_Writer = Annotated[Actor, Depends(require(Scope.FEEDBACK_REQUESTS_WRITE))]
_ERRORS: dict[int | str, dict[str, str]] = {
    403: {"description": "The key lacks feedback_requests:write."},
    404: {"description": "No such feedback request."},
}


class FeedbackRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: str = Field(min_length=1, max_length=200, description="The customer id, as events name it.")
    interaction: str = Field(
        min_length=1,
        max_length=300,
        description="What is asked about, unique: 'invoice:INV-2026-0042', or 'event:<source>|<id>' for an event "
        "you sent (the same request amends makes for it when its type is asked about).",
    )
    reference: str | None = Field(
        default=None, max_length=500, description="What it is about, in your words: shown to the customer."
    )
    language: str | None = Field(
        default=None, max_length=35, description="The page's language; default: the customer's, else the default."
    )
    send: StrictBool = Field(default=False, description="Also send the link to the customer (email, else a text).")


class FeedbackRequestOut(BaseModel):
    id: int
    interaction: str
    customer: str
    case_id: int | None
    event_type: str | None
    reference: str | None
    scale: Scale | None
    language: str | None
    created_at: datetime
    expires_at: datetime
    url: str = Field(description="The public page: a credential for this one request, until it expires.")
    qr_svg: str = Field(description="Where to get the URL as a QR code (SVG; .png for a bitmap).")
    message_id: int | None = Field(description="The message that carried the link, if one did.")
    answered_at: datetime | None


def _out(request: FeedbackRequest, outreach: Outreach) -> FeedbackRequestOut:
    return FeedbackRequestOut(
        id=request.id,
        interaction=request.interaction,
        customer=request.customer_id,
        case_id=request.case_id,
        event_type=request.event_type,
        reference=request.reference,
        scale=request.scale,
        language=request.language,
        created_at=request.created_at,
        expires_at=request.expires_at,
        url=outreach.links.feedback_url(request.id, request.interaction, request.expires_at),
        qr_svg=f"/v1/feedback-requests/{request.id}/qr.svg",
        message_id=request.message_id,
        answered_at=request.answered_at,
    )


@router.post(
    "",
    response_model=FeedbackRequestOut,
    status_code=201,
    responses={**_ERRORS, 200: {"description": "The interaction has a request already: that one."}},
)
async def post_feedback_request(
    body: FeedbackRequestIn,
    response: Response,
    db: DB,
    settings: AppSettings,
    outreach: OutreachState,
    _actor: _Writer,
) -> FeedbackRequestOut:
    """Create the feedback request of an interaction (or return the one it has), with its link. Neither the
    sample nor the per-customer cap applies: a printed link is offered, not sent. With `send`, the link also
    goes to the customer, under the contact policy."""
    policy = AskingPolicy.from_settings(settings)
    now = datetime.now(UTC)

    def run(uow: UnitOfWork) -> tuple[FeedbackRequest, bool]:
        language = body.language or language_of(uow, outreach, body.customer)
        created = create_request(
            uow,
            policy,
            interaction=body.interaction,
            customer_id=body.customer,
            now=now,
            language=language,
            reference=body.reference,
            sample=False,
        )
        assert created.request is not None, "without sampling, a request is always made or found"
        request = created.request
        if body.send:
            message = send_request(uow, outreach, request, now=now)
            request = get_request(uow, request.id) if message is not None else request
        return request, created.new

    request, new = await in_transaction(db, run)
    if not new:
        response.status_code = 200
    return _out(request, outreach)


@router.get("/{request_id}", response_model=FeedbackRequestOut, responses=_ERRORS)
async def get_feedback_request(request_id: Id, db: DB, outreach: OutreachState, _actor: _Writer) -> FeedbackRequestOut:
    """A feedback request with its link."""
    return _out(await reading(db, lambda uow: get_request(uow, request_id)), outreach)


@router.get(
    "/{request_id}/qr.{kind}",
    responses={**_ERRORS, 200: {"content": {"image/svg+xml": {}, "image/png": {}}, "description": "The QR code."}},
)
async def get_feedback_request_qr(
    request_id: Id,
    kind: Literal["svg", "png"],
    db: DB,
    outreach: OutreachState,
    _actor: _Writer,
    scale: Annotated[int, Query(ge=1, le=40, description="Pixels a module (png).")] = 8,
) -> Response:
    """The request's link as a QR code: `qr.svg` (scales for print) or `qr.png`."""
    found = await reading(db, lambda uow: get_request(uow, request_id))
    code = segno.make(outreach.links.feedback_url(found.id, found.interaction, found.expires_at), error="m")
    buffer = io.BytesIO()
    if kind == "svg":
        code.save(buffer, kind="svg", scale=4, border=4, title="Feedback link", xmldecl=True, svgns=True)
    else:
        code.save(buffer, kind="png", scale=scale, border=4)
    media = "image/svg+xml" if kind == "svg" else "image/png"
    return Response(buffer.getvalue(), media_type=media, headers={"Cache-Control": "no-store"})  # a credential
