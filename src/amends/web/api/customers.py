"""GET /v1/customers/{id} and its timeline: a customer's story, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from amends.access import Scope
from amends.events import Customer, TimelinePage, get_customer, timeline
from amends.recover.actors import Actor
from amends.store import Database
from amends.web.deps import DB, require

router = APIRouter(prefix="/v1/customers", tags=["customers"])
_Reader = Annotated[Actor, Depends(require(Scope.CUSTOMERS_READ))]


class CustomerOut(BaseModel):
    id: str
    created_at: datetime = Field(description="When amends first saw this customer.")
    event_count: int
    first_event_at: datetime | None
    last_event_at: datetime | None


class TimelineEvent(BaseModel):
    seq: int = Field(description="Place in the order of arrival.")
    received_at: datetime
    event: dict[str, Any] = Field(description="The event as a CloudEvents 1.0 object.")


class TimelineOut(BaseModel):
    events: list[TimelineEvent]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")
    next: str | None = Field(description="The URL of the next page; null at the end.")


@router.get("/{customer_id}", response_model=CustomerOut, responses={404: {"description": "Never seen."}})
async def read_customer(customer_id: str, db: DB, _key: _Reader) -> CustomerOut:
    """A customer and a summary of their events."""
    customer = await run_in_threadpool(_customer, db, customer_id)
    return CustomerOut(
        id=customer.id,
        created_at=customer.created_at,
        event_count=customer.event_count,
        first_event_at=customer.first_event_at,
        last_event_at=customer.last_event_at,
    )


@router.get("/{customer_id}/timeline", response_model=TimelineOut, responses={404: {"description": "Never seen."}})
async def read_timeline(
    customer_id: str,
    request: Request,
    db: DB,
    _key: _Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TimelineOut:
    """The customer's events, newest first by the time they happened, a page at a time."""
    page = await run_in_threadpool(_timeline, db, customer_id, limit, cursor)
    following = None
    if page.next_cursor is not None:
        following = str(request.url.include_query_params(cursor=page.next_cursor, limit=limit))
    return TimelineOut(
        events=[TimelineEvent(seq=e.seq, received_at=e.received_at, event=e.event.envelope()) for e in page.events],
        next_cursor=page.next_cursor,
        next=following,
    )


def _customer(db: Database, customer_id: str) -> Customer:
    with db.unit_of_work() as uow:
        return get_customer(uow, customer_id)


def _timeline(db: Database, customer_id: str, limit: int, cursor: str | None) -> TimelinePage:
    with db.unit_of_work() as uow:
        return timeline(uow, customer_id, limit=limit, cursor=cursor)
