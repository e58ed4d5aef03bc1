"""The dashboard's numbers, week by week over a recent span: how much recovery is proactive, how soon customers
hear from us, how often the first owner resolves it, how customers who write are answered, what they rate us,
what remedies cost, and which rules find the most. Reads; never writes.

Each measure comes from the module that owns it (recover/measures.py, feedback/measures.py), so the dashboard and
the API's /v1/measures can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import sqlalchemy as sa

from amends.errors import InvalidInput
from amends.feedback.measures import RatingMeasures, ResponseMeasures, rating_measures, response_measures
from amends.recover.measures import MeasuresSummary, no_cases, summarise_by_week
from amends.store import UnitOfWork, tables

__all__ = ["Dashboard", "Week", "dashboard", "measures_between", "weeks_since"]

# The longest span measured at once, as the feedback measures have it (feedback/measures.py), which are part of it.
_LONGEST_SPAN = timedelta(days=3 * 366)


@dataclass(frozen=True, slots=True)
class Week:
    """One week of recovery: its Monday, the label people read (2026-W47), and the cases opened in it."""

    start: datetime
    label: str
    cases: MeasuresSummary


@dataclass(frozen=True, slots=True)
class Dashboard:
    since: datetime
    until: datetime
    weeks: tuple[Week, ...]
    overall: MeasuresSummary
    responses: tuple[ResponseMeasures, ...]  # per week, every channel together
    ratings: tuple[RatingMeasures, ...]
    spend_by_kind: tuple[tuple[str, Decimal], ...]  # cash value granted, net of reversals, largest first
    incidents_by_rule: tuple[tuple[str, int], ...]  # most first
    currency: str


def dashboard(uow: UnitOfWork, *, weeks: int, now: datetime, currency: str) -> Dashboard:
    """The last `weeks` whole and current weeks (Monday to Monday, UTC) up to `now`."""
    if not 1 <= weeks <= 104:
        raise InvalidInput("weeks", "1 to 104")
    return measures_between(uow, since=weeks_since(weeks, now), until=now, now=now, currency=currency)


def weeks_since(weeks: int, now: datetime) -> datetime:
    """The start of the last `weeks` whole and current weeks up to `now`: the Monday (UTC) `weeks - 1` before this
    week's."""
    today = now.astimezone(UTC).date()
    return datetime.combine(today - timedelta(days=today.weekday()), time(), UTC) - timedelta(weeks=weeks - 1)


def measures_between(uow: UnitOfWork, *, since: datetime, until: datetime, now: datetime, currency: str) -> Dashboard:
    """The same measures for any span [since, until): cases by the week they opened in (the first week from
    `since`, the last up to `until`), feedback by the week it arrived, grants by when they were made, incidents by
    when they failed. `now` is when overdue answers are counted."""
    if since >= until:
        raise InvalidInput("since", "must be before until")
    if until - since > _LONGEST_SPAN:  # before a week is counted: millennia kept a worker busy for long
        raise InvalidInput("since", "at most three years at a time")
    first = since.astimezone(UTC)
    monday = datetime.combine(first.date() - timedelta(days=first.weekday()), time(), UTC)
    starts = []
    while monday < until:
        starts.append(max(monday, since))
        monday += timedelta(weeks=1)
    by_week, overall = summarise_by_week(uow, since=since, until=until)
    per_week = tuple(Week(start, _label(start), by_week.get(_monday(start)) or no_cases()) for start in starts)
    ledger = tables.ledger
    spend = uow.execute(
        sa.select(ledger.c.kind, sa.func.sum(sa.type_coerce(ledger.c.cash_value, sa.BigInteger)).label("hundredths"))
        .where(ledger.c.at >= since, ledger.c.at < until)
        .group_by(ledger.c.kind)
    ).all()
    incidents = tables.incidents
    by_rule = uow.execute(
        sa.select(incidents.c.rule_id, sa.func.count().label("n"))
        .where(incidents.c.failure_at >= since, incidents.c.failure_at < until)
        .group_by(incidents.c.rule_id)
    ).all()
    return Dashboard(
        since=since,
        until=until,
        weeks=per_week,
        overall=overall,
        responses=tuple(response_measures(uow, since=since, until=until, now=now, by_channel=False)),
        ratings=tuple(rating_measures(uow, since=since, until=until)),
        spend_by_kind=tuple(
            sorted(((r.kind, Decimal(int(r.hundredths or 0)) / 100) for r in spend), key=lambda kv: -kv[1])
        ),
        incidents_by_rule=tuple(sorted(((r.rule_id, int(r.n)) for r in by_rule), key=lambda kv: (-kv[1], kv[0]))),
        currency=currency,
    )


def _monday(start: datetime) -> str:
    day = start.astimezone(UTC).date()
    return (day - timedelta(days=day.weekday())).isoformat()


def _label(start: datetime) -> str:
    year, week, _ = start.isocalendar()
    return f"{year}-W{week:02d}"
