"""GET /v1/incidents and /v1/incidents/{id}: what detection found, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from amends.access import Scope
from amends.detect import IncidentFilter, IncidentPage, IncidentStatus, StoredIncident, get_incident, list_incidents
from amends.recover.actors import Actor
from amends.store import Database
from amends.web.api._inputs import Id, Instant
from amends.web.deps import DB, require

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])
_Reader = Annotated[Actor, Depends(require(Scope.INCIDENTS_READ))]


class IncidentOut(BaseModel):
    id: int
    rule_id: str = Field(description="The rule that found it.")
    key: str = Field(description="What the rule correlates by (an order id, a vehicle id); unique per rule.")
    customer_id: str
    severity: int
    playbook: str | None = Field(description="The recovery playbook the rule names.")
    status: IncidentStatus = Field(description="`resolved_late` when the expected event came after it fired.")
    failure_at: datetime = Field(description="When it went wrong: the deadline, or the event's time.")
    detected_at: datetime = Field(description="When amends noticed.")
    detected_by: str = Field(description="`stream` (as events arrived) or `backfill` (replayed history).")
    resolved_at: datetime | None
    facts: dict[str, Any] = Field(description="The fields of the events that made it.")
    resolution: dict[str, Any] | None = Field(description="The late event that resolved it, by reference.")

    @classmethod
    def of(cls, incident: StoredIncident) -> IncidentOut:
        return cls(
            id=incident.id,
            rule_id=incident.rule_id,
            key=incident.key,
            customer_id=incident.customer_id,
            severity=incident.severity,
            playbook=incident.playbook,
            status=incident.status,
            failure_at=incident.failure_at,
            detected_at=incident.detected_at,
            detected_by=incident.detected_by,
            resolved_at=incident.resolved_at,
            facts=incident.facts,
            resolution=incident.resolution,
        )


class IncidentsOut(BaseModel):
    incidents: list[IncidentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")
    next: str | None = Field(description="The URL of the next page; null at the end.")


@router.get("", response_model=IncidentsOut, responses={422: {"description": "A filter is not valid."}})
async def read_incidents(
    request: Request,
    db: DB,
    _key: _Reader,
    customer: Annotated[str | None, Query(max_length=200, description="Only this customer's.")] = None,
    rule: Annotated[str | None, Query(max_length=100, description="Only this rule's.")] = None,
    status: Annotated[IncidentStatus | None, Query(description="Only incidents in this status.")] = None,
    since: Annotated[Instant | None, Query(description="Went wrong at or after (RFC 3339).")] = None,
    until: Annotated[Instant | None, Query(description="Went wrong before (RFC 3339).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> IncidentsOut:
    """Incidents newest first by when they went wrong, a page at a time; every filter narrows."""
    where = IncidentFilter(customer_id=customer, rule_id=rule, status=status, since=since, until=until)
    page = await run_in_threadpool(_list, db, where, limit, cursor)
    following = None
    if page.next_cursor is not None:
        following = str(request.url.include_query_params(cursor=page.next_cursor, limit=limit))
    return IncidentsOut(
        incidents=[IncidentOut.of(incident) for incident in page.incidents],
        next_cursor=page.next_cursor,
        next=following,
    )


@router.get("/{incident_id}", response_model=IncidentOut, responses={404: {"description": "No such incident."}})
async def read_incident(incident_id: Id, db: DB, _key: _Reader) -> IncidentOut:
    """One incident, with its facts."""
    return IncidentOut.of(await run_in_threadpool(_get, db, incident_id))


def _list(db: Database, where: IncidentFilter, limit: int, cursor: str | None) -> IncidentPage:
    with db.unit_of_work() as uow:
        return list_incidents(uow, where, limit=limit, cursor=cursor)


def _get(db: Database, incident_id: int) -> StoredIncident:
    with db.unit_of_work() as uow:
        return get_incident(uow, incident_id)
