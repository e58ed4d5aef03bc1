"""Recovery measures (DESIGN §1 B, F): how soon we reached the customer, how soon the case was resolved, how
many contacts and handoffs it took, whether the first owner resolved it, and what its remedies cost.

Read-only. Counts, sums and durations (in whole microseconds, exact on both engines) are computed in SQL;
only the medians are taken in Python, from the durations alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from amends.errors import InvalidInput, NotFound
from amends.recover.cases import WITHHELD
from amends.store import UnitOfWork, tables

__all__ = ["CaseMeasures", "MeasuresSummary", "case_measures", "no_cases", "summarise", "summarise_by_week"]

_cases = tables.cases
_contacts = tables.case_contacts
_handoffs = tables.handoffs
_approvals = tables.approvals
_ledger = tables.ledger

# The values of cases.origin and cases.status these measures read (recover/cases.py writes them).
_ORIGINS = ("proactive", "reactive")
_RESOLVED = ("resolved", "closed")
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class CaseMeasures:
    """The measures of one case.

    `first_contact_resolution` is None while the case is not resolved; else True when it was resolved with no
    handoff, no approval request and no reopening. `customer_spoke_first` is None while neither we nor the
    customer have spoken. `remedy_cost` is the net cash value of its ledger entries (reversals subtract).
    """

    case_id: int
    origin: str
    status: str
    time_to_first_contact: timedelta | None
    time_to_resolution: timedelta | None
    contacts: int
    outbound_contacts: int
    inbound_contacts: int
    handoffs: int
    approvals: int
    first_contact_resolution: bool | None
    remedy_cost: Decimal
    customer_spoke_first: bool | None


@dataclass(frozen=True, slots=True)
class MeasuresSummary:
    """The measures of a set of cases.

    Means are over every case of the set, the first-contact resolution rate over its resolved cases, the
    medians over the cases that have the duration; each is None when there is nothing to take it over.
    `remedy_cost_per_case` is the net total over every case of the set (with or without a remedy), to the
    cent. `by_origin` holds the same summary for each origin in the set (`proactive` and `reactive`, or the
    one asked for); its own summaries have an empty `by_origin`.
    """

    cases: int
    proactive: int
    reactive: int
    resolved: int
    customer_spoke_first: int
    first_contact_resolutions: int
    median_time_to_first_contact: timedelta | None
    median_time_to_resolution: timedelta | None
    mean_contacts: float | None
    mean_handoffs: float | None
    first_contact_resolution_rate: float | None
    remedy_cost_total: Decimal
    remedy_cost_per_case: Decimal | None
    by_origin: Mapping[str, MeasuresSummary] = field(default_factory=lambda: MappingProxyType({}))


def case_measures(uow: UnitOfWork, case_id: int) -> CaseMeasures:
    """The measures of one case; NotFound if there is none."""
    handoffs = _handoffs.c.from_id.is_not(None)  # the first assignment has no from_id: it is not a handoff
    query = sa.select(
        _cases,
        _count_of(_contacts, _contacts.c.direction == "outbound").label("outbound"),
        _count_of(_contacts, _contacts.c.direction == "inbound").label("inbound"),
        _count_of(_handoffs, handoffs).label("handoffs"),
        _count_of(_approvals).label("approvals"),
        # Summed as the stored whole hundredths (exact); reversals are negative entries and net out.
        sa.select(sa.func.sum(sa.type_coerce(_ledger.c.cash_value, sa.BigInteger)))
        .where(_ledger.c.case_id == _cases.c.id)
        .scalar_subquery()
        .label("cost"),
    ).where(_cases.c.id == case_id)
    row = uow.execute(query).first()
    if row is None:
        raise NotFound(f"no case {case_id}")
    resolved = row.status in _RESOLVED
    spoke_first: bool | None = None
    if row.customer_spoke_at is not None:
        spoke_first = row.first_contact_at is None or row.customer_spoke_at <= row.first_contact_at
    elif row.first_contact_at is not None:
        spoke_first = False
    return CaseMeasures(
        case_id=row.id,
        origin=row.origin,
        status=row.status,
        time_to_first_contact=_since(row.opened_at, row.first_contact_at),
        time_to_resolution=_since(row.opened_at, row.resolved_at) if resolved else None,
        contacts=row.outbound + row.inbound,
        outbound_contacts=row.outbound,
        inbound_contacts=row.inbound,
        handoffs=row.handoffs,
        approvals=row.approvals,
        first_contact_resolution=(row.handoffs == row.approvals == row.reopened == 0) if resolved else None,
        remedy_cost=_money(row.cost),
        customer_spoke_first=spoke_first,
    )


# A case recovery worked on: not held out, or held out and then raised by the customer or lifted.
_WORKED = sa.not_(WITHHELD)


def summarise(
    uow: UnitOfWork, *, since: datetime | None = None, until: datetime | None = None, origin: str | None = None
) -> MeasuresSummary:
    """The measures of the cases opened in [since, until), of one origin or both."""
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since", "must be before until")
    if origin is not None and origin not in _ORIGINS:
        raise InvalidInput("origin", f"one of {', '.join(_ORIGINS)}, got {origin!r}")
    where: list[sa.ColumnElement[bool]] = []
    if since is not None:
        where.append(_cases.c.opened_at >= since)
    if until is not None:
        where.append(_cases.c.opened_at < until)
    if origin is not None:
        where.append(_cases.c.origin == origin)

    # One grouped statement per table, joined to the chosen cases: no subquery runs once per case, so a
    # summary of 100k cases reads each table once.
    grouped = _read(uow, where)
    totals, to_contact, to_resolve = (
        grouped.totals.get("", {}),
        grouped.contact.get("", {}),
        grouped.resolve.get("", {}),
    )

    return _of_group(totals, to_contact, to_resolve, (origin,) if origin is not None else _ORIGINS)


def summarise_by_week(
    uow: UnitOfWork, *, since: datetime, until: datetime
) -> tuple[dict[str, MeasuresSummary], MeasuresSummary]:
    """The measures of the cases opened in [since, until), per week of opening (Monday, UTC, as 'YYYY-MM-DD'), and
    of them all: the same as `summarise` of each week and of the whole span, read in one grouped statement per
    table rather than one set per week."""
    if since >= until:
        raise InvalidInput("since", "must be before until")
    where = [_cases.c.opened_at >= since, _cases.c.opened_at < until]
    grouped = _read(uow, where, _week_of(uow.dialect, _cases.c.opened_at))
    totals, to_contact, to_resolve = grouped.totals, grouped.contact, grouped.resolve
    weeks = {
        key: _of_group(totals.get(key, {}), to_contact.get(key, {}), to_resolve.get(key, {}), _ORIGINS)
        for key in sorted(set(totals) | set(to_contact) | set(to_resolve))
    }
    return weeks, _overall(totals, to_contact, to_resolve)


@dataclass(frozen=True, slots=True)
class _Grouped:
    """Per group (the value of `by`, or "" for all the chosen cases) and origin: each measure's total, and the
    durations to first contact and to resolution in microseconds."""

    totals: dict[str, dict[str, dict[str, int]]]
    contact: dict[str, dict[str, list[int]]]
    resolve: dict[str, dict[str, list[int]]]


def _read(uow: UnitOfWork, where: list[sa.ColumnElement[bool]], by: sa.ColumnElement[Any] | None = None) -> _Grouped:
    """The measures' raw material for the chosen cases, one grouped statement per table and one for durations.
    Held-out cases nobody worked (the customer never raised them) are not recovery work: they are left out, and
    measured by the experiment instead (insights/)."""
    where = [*where, _WORKED]
    grouped = _Grouped({}, {}, {})
    for statement in _aggregates(where, by):
        for row in uow.execute(statement).mappings():
            measures = grouped.totals.setdefault("" if by is None else str(row["by"]), {}).setdefault(row["origin"], {})
            for measure, value in row.items():
                if measure not in ("origin", "by"):
                    # PostgreSQL sums integers as numeric (Decimal), SQLite as int: whole numbers either way.
                    measures[measure] = int(value or 0)
    resolved = _cases.c.status.in_(_RESOLVED)
    keys: list[sa.ColumnElement[Any]] = [_cases.c.origin] if by is None else [_cases.c.origin, by.label("by")]
    timed = sa.select(
        *keys,
        _microseconds(uow.dialect, _cases.c.opened_at, _cases.c.first_contact_at).label("to_contact"),
        sa.case((resolved, _microseconds(uow.dialect, _cases.c.opened_at, _cases.c.resolved_at))).label("to_resolve"),
    ).where(*where, sa.or_(_cases.c.first_contact_at.is_not(None), resolved))
    for row in uow.execute(timed).mappings():
        group = "" if by is None else str(row["by"])
        if row["to_contact"] is not None:
            grouped.contact.setdefault(group, {}).setdefault(row["origin"], []).append(int(row["to_contact"]))
        if row["to_resolve"] is not None:
            grouped.resolve.setdefault(group, {}).setdefault(row["origin"], []).append(int(row["to_resolve"]))
    return grouped


def _overall(
    totals: dict[str, dict[str, dict[str, int]]],
    to_contact: dict[str, dict[str, list[int]]],
    to_resolve: dict[str, dict[str, list[int]]],
) -> MeasuresSummary:
    """The summary of every week together, from the weeks' totals and durations."""
    by_origin: dict[str, dict[str, int]] = {}
    for per_origin in totals.values():
        for origin, measures in per_origin.items():
            summed = by_origin.setdefault(origin, {})
            for measure, value in measures.items():
                summed[measure] = summed.get(measure, 0) + value
    contact = {o: [d for week in to_contact.values() for d in week.get(o, [])] for o in _ORIGINS}
    resolve = {o: [d for week in to_resolve.values() for d in week.get(o, [])] for o in _ORIGINS}
    return _of_group(by_origin, contact, resolve, _ORIGINS)


def _of_group(
    by_origin: Mapping[str, Mapping[str, int]],
    to_contact: Mapping[str, list[int]],
    to_resolve: Mapping[str, list[int]],
    origins: tuple[str, ...],
) -> MeasuresSummary:
    """The summary of one group of cases from its totals and durations per origin, with a part per origin."""
    parts = {
        name: _summary({name: by_origin.get(name, {})}, to_contact.get(name, []), to_resolve.get(name, []), {})
        for name in origins
    }
    return _summary(
        by_origin,
        [d for durations in to_contact.values() for d in durations],
        [d for durations in to_resolve.values() for d in durations],
        parts,
    )


def no_cases() -> MeasuresSummary:
    """The summary of no cases at all (as `summarise` gives for a window with none)."""
    return _summary({}, [], [], {name: _summary({}, [], [], {}) for name in _ORIGINS})


def _week_of(dialect: str, instant: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The Monday (UTC) of an instant's week, as 'YYYY-MM-DD' text."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.date_trunc("week", sa.func.timezone("UTC", instant)), "YYYY-MM-DD")
    # SQLite keeps instants as UTC text; six days back, then forward to the next Monday, is the week's Monday.
    return sa.func.date(instant, "-6 days", "weekday 1")


# --- inside ----------------------------------------------------------------------------------------------


def _count_of(table: sa.Table, *conditions: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
    """How many rows of `table` belong to the case of the enclosing query."""
    return sa.select(sa.func.count()).where(table.c.case_id == _cases.c.id, *conditions).scalar_subquery()


def _aggregates(where: list[sa.ColumnElement[bool]], by: sa.ColumnElement[Any] | None = None) -> list[sa.Select[Any]]:
    """Statements giving, per origin of the chosen cases (and per value of `by`, as a column `by`, if given), an
    `origin` column and one column per measure."""
    keys: list[sa.ColumnElement[Any]] = [_cases.c.origin] if by is None else [_cases.c.origin, by.label("by")]
    resolved = _cases.c.status.in_(_RESOLVED)
    # IN over a whole column: hashed once on PostgreSQL, an ephemeral index on SQLite.
    escalated = sa.or_(
        _cases.c.id.in_(sa.select(_handoffs.c.case_id).where(_handoffs.c.from_id.is_not(None))),
        _cases.c.id.in_(sa.select(_approvals.c.case_id)),
    )
    first_owner = sa.and_(resolved, _cases.c.reopened == 0, sa.not_(escalated))
    # Instants compare correctly on both engines: SQLite keeps them as UTC text that sorts in time order.
    spoke_first = sa.and_(
        _cases.c.customer_spoke_at.is_not(None),
        sa.or_(_cases.c.first_contact_at.is_(None), _cases.c.customer_spoke_at <= _cases.c.first_contact_at),
    )

    def per_origin(table: sa.Table, *conditions: sa.ColumnElement[bool], **measures: Any) -> sa.Select[Any]:
        joined = _cases if table is _cases else table.join(_cases, _cases.c.id == table.c.case_id)
        return (
            sa.select(*keys, *(value.label(name) for name, value in measures.items()))
            .select_from(joined)
            .where(*where, *conditions)
            .group_by(*(key.element if isinstance(key, sa.Label) else key for key in keys))
        )

    def how_many(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    return [
        per_origin(
            _cases,
            cases=sa.func.count(),
            resolved=how_many(resolved),
            first_contact_resolutions=how_many(first_owner),
            customer_spoke_first=how_many(spoke_first),
        ),
        per_origin(_contacts, contacts=sa.func.count()),
        per_origin(_handoffs, _handoffs.c.from_id.is_not(None), handoffs=sa.func.count()),
        # Whole hundredths, exact; reversals are negative entries and net out.
        per_origin(_ledger, cost=sa.func.sum(sa.type_coerce(_ledger.c.cash_value, sa.BigInteger))),
    ]


def _microseconds(dialect: str, start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """`end - start` in whole microseconds, NULL when `end` is; exact on both engines."""
    if dialect == "postgresql":
        return sa.cast(sa.func.round(sa.extract("epoch", end - start) * 1_000_000), sa.BigInteger)

    # SQLite keeps an instant as 'YYYY-MM-DD HH:MM:SS.ffffff', UTC, always with the microseconds (see
    # store/bulk.py). Its date functions keep milliseconds only, so take the whole seconds and the
    # microseconds apart.
    def seconds(instant: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.cast(sa.func.strftime("%s", sa.func.substr(instant, 1, 19)), sa.BigInteger)

    def micros(instant: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.cast(sa.func.substr(instant, 21, 6), sa.BigInteger)

    return (seconds(end) - seconds(start)) * 1_000_000 + micros(end) - micros(start)


def _summary(
    by_origin: Mapping[str, Mapping[str, int]],
    to_contact: list[int],
    to_resolve: list[int],
    parts: Mapping[str, MeasuresSummary],
) -> MeasuresSummary:
    """The summary of the cases whose totals, per origin and measure, are `by_origin`."""

    def total(measure: str) -> int:
        return sum(values.get(measure, 0) for values in by_origin.values())

    cases, resolved, fcr = total("cases"), total("resolved"), total("first_contact_resolutions")
    cost = _money(total("cost"))
    return MeasuresSummary(
        cases=cases,
        proactive=by_origin.get("proactive", {}).get("cases", 0),
        reactive=by_origin.get("reactive", {}).get("cases", 0),
        resolved=resolved,
        customer_spoke_first=total("customer_spoke_first"),
        first_contact_resolutions=fcr,
        median_time_to_first_contact=_median(to_contact),
        median_time_to_resolution=_median(to_resolve),
        mean_contacts=total("contacts") / cases if cases else None,
        mean_handoffs=total("handoffs") / cases if cases else None,
        first_contact_resolution_rate=fcr / resolved if resolved else None,
        remedy_cost_total=cost,
        remedy_cost_per_case=(cost / cases).quantize(_CENT) if cases else None,
        by_origin=MappingProxyType(dict(parts)),
    )


def _median(microseconds: list[int]) -> timedelta | None:
    """The middle duration; of an even count, the mean of the middle two (to the microsecond, half to even)."""
    if not microseconds:
        return None
    ordered = sorted(microseconds)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return timedelta(microseconds=ordered[middle])
    return (timedelta(microseconds=ordered[middle - 1]) + timedelta(microseconds=ordered[middle])) / 2


def _since(start: datetime, end: datetime | None) -> timedelta | None:
    return None if end is None else end - start


def _money(hundredths: Any) -> Decimal:
    return (Decimal(int(hundredths or 0)) / 100).quantize(_CENT)
