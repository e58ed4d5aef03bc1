"""/v1/ledger: every remedy granted, a page at a time or as a CSV file; corrections by reversal. And the
measures of recovery: per case, and in aggregate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from amends.access import Scope
from amends.errors import InvalidInput
from amends.recover import remedies
from amends.recover.actors import Actor
from amends.recover.cases import Origin, visible_case
from amends.recover.ledger import LedgerFilter, export_csv, list_ledger
from amends.recover.measures import case_measures, summarise
from amends.recover.roles import Role
from amends.store import Database, UnitOfWork
from amends.web.api._inputs import Id, Instant
from amends.web.api.cases import LedgerEntryOut
from amends.web.deps import DB, Acting, in_transaction, reading, require
from amends.web.errors import RECOVERY_ERRORS

router = APIRouter(prefix="/v1", tags=["ledger"])
_LedgerReader = Annotated[Actor, Depends(require(Scope.LEDGER_READ))]
_CaseReader = Annotated[Actor, Depends(require(Scope.CASES_READ))]


class LedgerOut(BaseModel):
    entries: list[LedgerEntryOut]
    next_cursor: str | None
    next: str | None


class ReverseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


def _to_the_second(value: timedelta) -> timedelta:
    return timedelta(seconds=round(value.total_seconds()))


# A time between two moments of a case, as an ISO 8601 duration to the second: the `duration` format the schema
# declares (RFC 3339, appendix A) has no fractions of a second.
Duration = Annotated[timedelta, AfterValidator(_to_the_second)]


class CaseMeasuresOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    case_id: int
    origin: str
    status: str
    time_to_first_contact: Duration | None
    time_to_resolution: Duration | None
    contacts: int
    outbound_contacts: int
    inbound_contacts: int
    handoffs: int
    approvals: int
    first_contact_resolution: bool | None = Field(
        description="Resolved by the first owner with no handoff, no approval and no reopening; null while open."
    )
    remedy_cost: Decimal
    customer_spoke_first: bool | None


class SummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    cases: int
    proactive: int
    reactive: int
    resolved: int
    customer_spoke_first: int
    first_contact_resolutions: int
    median_time_to_first_contact: Duration | None
    median_time_to_resolution: Duration | None
    mean_contacts: float | None
    mean_handoffs: float | None
    first_contact_resolution_rate: float | None
    remedy_cost_total: Decimal
    remedy_cost_per_case: Decimal | None
    by_origin: dict[str, SummaryOut] = Field(default_factory=dict)


def _filter(
    kind: str | None,
    granted_by: str | None,
    case: int | None,
    customer: str | None,
    since: datetime | None,
    until: datetime | None,
) -> LedgerFilter:
    return LedgerFilter(kind, granted_by, case, customer, since, until)


@router.get("/ledger", response_model=LedgerOut, responses=RECOVERY_ERRORS)
async def read_ledger(
    request: Request,
    db: DB,
    _actor: _LedgerReader,
    kind: Annotated[str | None, Query(max_length=50)] = None,
    granted_by: Annotated[str | None, Query(max_length=100)] = None,
    case: Annotated[Id | None, Query()] = None,
    customer: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> LedgerOut:
    """Ledger entries newest first (managers, admins, and keys with `ledger:read`)."""
    flt = _filter(kind, granted_by, case, customer, since, until)
    entries, following = await reading(db, lambda uow: list_ledger(uow, flt, limit=limit, cursor=cursor))
    url = None if following is None else str(request.url.include_query_params(cursor=following, limit=limit))
    return LedgerOut(entries=[LedgerEntryOut.model_validate(e) for e in entries], next_cursor=following, next=url)


@router.get(
    "/ledger.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "Every matching entry, oldest first."},
        **RECOVERY_ERRORS,
    },
)
async def read_ledger_csv(
    db: DB,
    _actor: _LedgerReader,
    kind: Annotated[str | None, Query(max_length=50)] = None,
    granted_by: Annotated[str | None, Query(max_length=100)] = None,
    case: Annotated[Id | None, Query()] = None,
    customer: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
) -> StreamingResponse:
    """The ledger as CSV, streamed; text cells are safe to open in a spreadsheet (no formulas)."""
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since", "must be before until")  # before the 200 goes out with the first chunk
    flt = _filter(kind, granted_by, case, customer, since, until)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        _stream(db, flt),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="amends-ledger-{stamp}.csv"'},
    )


def _stream(db: Database, flt: LedgerFilter) -> Iterator[str]:
    with db.unit_of_work() as uow:
        yield from export_csv(uow, flt)


@router.post("/ledger/{entry_id}/reverse", response_model=LedgerEntryOut, status_code=201, responses=RECOVERY_ERRORS)
async def post_reverse(entry_id: Id, body: ReverseIn, db: DB, actor: Acting) -> LedgerEntryOut:
    """Correct an entry with a reversing one (managers); an entry is never edited."""
    entry = await in_transaction(
        db, lambda uow: remedies.reverse(uow, entry_id, reason=body.reason, actor=actor, now=datetime.now(UTC))
    )
    return LedgerEntryOut.model_validate(entry)


@router.get("/cases/{case_id}/measures", response_model=CaseMeasuresOut, responses=RECOVERY_ERRORS, tags=["cases"])
async def read_case_measures(case_id: Id, db: DB, actor: _CaseReader) -> CaseMeasuresOut:
    """The measures of one case: time to first contact and to resolution, contacts, handoffs, cost."""

    def run(uow: UnitOfWork) -> CaseMeasuresOut:
        visible_case(uow, case_id, actor)
        return CaseMeasuresOut.model_validate(case_measures(uow, case_id))

    return await reading(db, run)


@router.get("/measures", response_model=SummaryOut, responses=RECOVERY_ERRORS, tags=["cases"])
async def read_measures(
    db: DB,
    actor: _CaseReader,
    since: Annotated[Instant | None, Query(description="Cases opened at or after.")] = None,
    until: Annotated[Instant | None, Query(description="Cases opened before.")] = None,
    origin: Annotated[Origin | None, Query()] = None,
) -> SummaryOut:
    """Recovery in aggregate (managers, admins, and keys with `cases:read`): proactive share, time to first
    contact and to resolution, contacts and handoffs per case, first-contact resolution, remedy cost."""
    if actor.staff is not None:  # the totals span every team
        actor.at_least(Role.MANAGER, "reading the measures")
    summary = await reading(
        db, lambda uow: summarise(uow, since=since, until=until, origin=None if origin is None else origin.value)
    )
    return SummaryOut.model_validate(summary)
