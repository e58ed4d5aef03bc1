"""Reading incidents back: one by id, or a page of them newest first, filtered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from amends.detect.incidents import IncidentStatus
from amends.errors import InvalidInput, NotFound
from amends.store import UnitOfWork, tables
from amends.store.paging import decode_cursor, encode_cursor

__all__ = ["IncidentFilter", "IncidentPage", "StoredIncident", "get_incident", "list_incidents"]

_incidents = tables.incidents


@dataclass(frozen=True, slots=True)
class StoredIncident:
    """An incident as stored: what went wrong for whom, when, and how amends learned of it."""

    id: int
    rule_id: str
    key: str
    customer_id: str
    severity: int
    playbook: str | None
    status: IncidentStatus
    failure_at: datetime
    detected_at: datetime
    detected_by: str
    resolved_at: datetime | None
    facts: dict[str, Any]
    resolution: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """Which incidents to list; every field narrows. `since`/`until` bound `failure_at` (until excluded)."""

    customer_id: str | None = None
    rule_id: str | None = None
    status: IncidentStatus | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class IncidentPage:
    """Incidents newest first by `failure_at`; `next_cursor` fetches the older ones, None on the last page."""

    incidents: tuple[StoredIncident, ...]
    next_cursor: str | None


def get_incident(uow: UnitOfWork, incident_id: int) -> StoredIncident:
    """The incident with this id; NotFound if there is none."""
    row = uow.execute(sa.select(_incidents).where(_incidents.c.id == incident_id)).one_or_none()
    if row is None:
        raise NotFound(f"no incident {incident_id}")
    return _incident(row)


def list_incidents(uow: UnitOfWork, where: IncidentFilter, *, limit: int, cursor: str | None = None) -> IncidentPage:
    """One page of the incidents that pass `where`, newest first by when they went wrong."""
    if where.since is not None and where.until is not None and where.since >= where.until:
        raise InvalidInput("since", "must be before until")
    query = sa.select(_incidents)
    if where.customer_id is not None:
        query = query.where(_incidents.c.customer_id == where.customer_id)
    if where.rule_id is not None:
        query = query.where(_incidents.c.rule_id == where.rule_id)
    if where.status is not None:
        query = query.where(_incidents.c.status == where.status)
    if where.since is not None:
        query = query.where(_incidents.c.failure_at >= where.since)
    if where.until is not None:
        query = query.where(_incidents.c.failure_at < where.until)
    if cursor is not None:
        before_time, before_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                _incidents.c.failure_at < before_time,
                sa.and_(_incidents.c.failure_at == before_time, _incidents.c.id < before_id),
            )
        )
    order = (_incidents.c.failure_at.desc(), _incidents.c.id.desc())
    rows = uow.execute(query.order_by(*order).limit(limit + 1)).all()
    page = tuple(_incident(row) for row in rows[:limit])
    next_cursor = encode_cursor(page[-1].failure_at, page[-1].id) if len(rows) > limit else None
    return IncidentPage(page, next_cursor)


def _incident(row: Any) -> StoredIncident:
    return StoredIncident(
        id=row.id,
        rule_id=row.rule_id,
        key=row.key,
        customer_id=row.customer_id,
        severity=row.severity,
        playbook=row.playbook,
        status=row.status,
        failure_at=row.failure_at,
        detected_at=row.detected_at,
        detected_by=row.detected_by,
        resolved_at=row.resolved_at,
        facts=row.facts,
        resolution=row.resolution,
    )
