"""GET /v1/customers/{id} and its timeline (a customer's story, newest first); how amends may reach them (their
profile and whether they opted out), and staff recording an opt-out on their behalf."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from amends.access import Scope
from amends.events import Customer, TimelinePage, get_customer, timeline
from amends.outreach.contact import opt_in, opt_out, opt_out_of
from amends.outreach.profiles import customer_profile
from amends.recover.actors import Actor
from amends.store import Database, UnitOfWork
from amends.web.deps import DB, OutreachState, in_transaction, reading, require

router = APIRouter(prefix="/v1/customers", tags=["customers"])
_Reader = Annotated[Actor, Depends(require(Scope.CUSTOMERS_READ))]
_OptingOut = Annotated[Actor, Depends(require(Scope.OPT_OUTS_WRITE))]
# Writing to a customer again is the riskier direction: a manager's right, as with retrying a dead letter.
_OptingIn = Annotated[Actor, Depends(require(Scope.MESSAGES_WRITE))]
_CustomerId = Annotated[str, Path(min_length=1, max_length=200)]


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


class ContactOut(BaseModel):
    customer_id: str
    name: str | None
    email: str | None
    phone: str | None
    address: list[str] = Field(description="The postal address, one line each, without the name.")
    language: str | None
    timezone: str | None
    channel: str | None = Field(description="The customer's own preference: email, sms or card.")
    problems: list[str] = Field(description="Values given in their profile events that cannot be used, and why.")
    opted_out_at: datetime | None = Field(description="When they asked for no more messages; null if they have not.")
    opted_out_by: str | None = Field(
        description="How: the unsubscribe link, staff on their behalf, or another of the company's systems."
    )


@router.get("/{customer_id}/contact", response_model=ContactOut)
async def read_contact(customer_id: _CustomerId, db: DB, outreach: OutreachState, _key: _Reader) -> ContactOut:
    """How amends may reach the customer: their profile, as their profile events say it now, and their opt-out.
    A customer with no profile events has an empty profile (not a 404: an opt-out may come first)."""
    return await reading(db, lambda uow: _contact(uow, outreach.profile_events, customer_id))


@router.post("/{customer_id}/opt-out", response_model=ContactOut)
async def record_opt_out(customer_id: _CustomerId, db: DB, outreach: OutreachState, actor: _OptingOut) -> ContactOut:
    """The customer asked for no more messages (on the phone, at the desk, or in another system): nothing more
    goes to them, and what waits to go is cancelled. Asking again changes nothing; the first time is kept.
    Audited as `customer.opted_out`."""

    def run(uow: UnitOfWork) -> ContactOut:
        source = "staff" if actor.staff is not None else "api"
        opt_out(uow, customer_id, source=source, actor=actor, now=datetime.now(UTC))
        return _contact(uow, outreach.profile_events, customer_id)

    return await in_transaction(db, run)


@router.delete("/{customer_id}/opt-out", response_model=ContactOut)
async def record_opt_in(customer_id: _CustomerId, db: DB, outreach: OutreachState, actor: _OptingIn) -> ContactOut:
    """The customer asked to hear from us again. Messages the opt-out cancelled stay cancelled. Not opted out:
    nothing changes. Audited as `customer.opted_in`."""

    def run(uow: UnitOfWork) -> ContactOut:
        opt_in(uow, customer_id, actor=actor, now=datetime.now(UTC))
        return _contact(uow, outreach.profile_events, customer_id)

    return await in_transaction(db, run)


def _contact(uow: UnitOfWork, profile_events: tuple[str, ...], customer_id: str) -> ContactOut:
    profile = customer_profile(uow, customer_id, event_types=profile_events)
    opted = opt_out_of(uow, customer_id)
    return ContactOut(
        customer_id=customer_id,
        name=profile.name,
        email=profile.email,
        phone=profile.phone,
        address=list(profile.address),
        language=profile.language,
        timezone=profile.timezone,
        channel=profile.channel,
        problems=list(profile.problems),
        opted_out_at=None if opted is None else opted.at,
        opted_out_by=None if opted is None else opted.source,
    )
