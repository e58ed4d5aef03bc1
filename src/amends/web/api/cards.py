"""/v1/cards: the queue of hand-written cards. Staff list the cards to write, print a sheet of them (which marks
them printed), and mark each written, then posted. Every staff role has `cards:write`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from amends.access import Scope
from amends.outreach.cards import (
    CardState,
    CardTask,
    card_pdf,
    get_card_task,
    list_card_tasks,
    mark_posted,
    mark_written,
    print_cards,
)
from amends.recover.actors import Actor
from amends.web.api._inputs import BodyId, BodyInt, Id
from amends.web.deps import DB, in_transaction, reading, require
from amends.web.errors import RECOVERY_ERRORS

router = APIRouter(prefix="/v1/cards", tags=["cards"])
_CardWorker = Annotated[Actor, Depends(require(Scope.CARDS_WRITE))]
_ERRORS = {
    **RECOVERY_ERRORS,
    403: {"description": "The key lacks `cards:write`."},
    404: {"description": "No such card task."},
    409: {"description": "Marked already, posted before written, or nothing in the state to print."},
}
_PDF: dict[int | str, dict[str, Any]] = {200: {"content": {"application/pdf": {}}, "description": "The PDF."}}


class CardOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    message_id: int
    case_id: int | None
    customer_id: str
    kind: str
    state: CardState
    name: str = Field(description="The customer's name: the postal block's first line.")
    postal_lines: list[str] = Field(description="The postal block, the name first, one line each.")
    has_address: bool = Field(
        description="False when the block is the name alone: no postal address on file, so staff must ask the "
        "customer for one or hand the card over."
    )
    subject: str = Field(description="The heading staff see in the queue.")
    text: str = Field(description="The note to write by hand.")
    created_at: datetime
    printed_at: datetime | None = Field(description="When it was first printed on a sheet.")
    written_at: datetime | None
    written_by: str | None
    posted_at: datetime | None
    posted_by: str | None


class CardsOut(BaseModel):
    cards: list[CardOut]
    next_cursor: str | None
    next: str | None


class SheetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[BodyId] | None = Field(
        default=None, min_length=1, max_length=200, description="The cards to print, in this order."
    )
    state: CardState | None = Field(default=None, description="Or: print the oldest cards in this state.")
    limit: BodyInt = Field(default=50, ge=1, le=200, description="With `state`: how many, oldest first.")


def _out(task: CardTask) -> CardOut:
    return CardOut.model_validate(task)


@router.get("", response_model=CardsOut, responses=_ERRORS)
async def read_cards(
    request: Request,
    db: DB,
    _actor: _CardWorker,
    state: Annotated[Literal["to_write", "written", "posted", "all"], Query()] = "to_write",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CardsOut:
    """Card tasks in a state (`to_write` by default, `written`, `posted` or `all`), oldest first."""
    tasks, following = await reading(db, lambda uow: list_card_tasks(uow, state=state, limit=limit, cursor=cursor))
    url = None if following is None else str(request.url.include_query_params(cursor=following, limit=limit))
    return CardsOut(cards=[_out(task) for task in tasks], next_cursor=following, next=url)


@router.post("/sheet", response_class=Response, responses={**_PDF, **_ERRORS})
async def post_sheet(body: SheetIn, db: DB, actor: _CardWorker) -> Response:
    """A print sheet: the batch's list, then each card. The cards are marked printed once the sheet is made."""
    now = datetime.now(UTC)
    _tasks, sheet = await run_in_threadpool(
        print_cards, db, ids=body.ids, state=body.state, limit=body.limit, by=actor, now=now
    )
    return _pdf(sheet, f"amends-cards-{now.strftime('%Y%m%dT%H%M%SZ')}.pdf")


# Before "/{task_id}", which would otherwise take "7.pdf" and refuse it as no number.
@router.get("/{task_id}.pdf", response_class=Response, responses={**_PDF, **_ERRORS})
async def read_card_pdf(task_id: Id, db: DB, _actor: _CardWorker) -> Response:
    """One card's PDF, to write it from; it does not mark the card printed."""
    task = await reading(db, lambda uow: get_card_task(uow, task_id))
    return _pdf(card_pdf(task), f"amends-card-{task_id}.pdf")


@router.get("/{task_id}", response_model=CardOut, responses=_ERRORS)
async def read_card(task_id: Id, db: DB, _actor: _CardWorker) -> CardOut:
    """One card task."""
    return _out(await reading(db, lambda uow: get_card_task(uow, task_id)))


@router.post("/{task_id}/written", response_model=CardOut, responses=_ERRORS)
async def post_written(task_id: Id, db: DB, actor: _CardWorker) -> CardOut:
    """Mark the card written by hand, by the caller, now."""
    now = datetime.now(UTC)
    return _out(await in_transaction(db, lambda uow: mark_written(uow, task_id, by=actor, now=now)))


@router.post("/{task_id}/posted", response_model=CardOut, responses=_ERRORS)
async def post_posted(task_id: Id, db: DB, actor: _CardWorker) -> CardOut:
    """Mark the written card posted, by the caller, now."""
    now = datetime.now(UTC)
    return _out(await in_transaction(db, lambda uow: mark_posted(uow, task_id, by=actor, now=now)))


def _pdf(content: bytes, filename: str) -> Response:
    return Response(
        content, media_type="application/pdf", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
