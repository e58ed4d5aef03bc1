"""The report a CX lead forwards: for a span of time, the recovery and feedback measures week by week, what the
holdout experiment says recovery does for customers, and "you said, we did" (docs/insights.md#the-report).

`build_report` reads; `amends.insights.render` writes it as Markdown, HTML or PDF, and `GET /v1/metrics/report`
returns the same figures as JSON (`amends.web.api.metrics.ReportOut`). Every figure's definition is in
docs/insights.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from amends.insights.dashboard import Dashboard, measures_between
from amends.insights.experiment import Experiment, analyse
from amends.insights.outcomes import Outcome, spend_outcome
from amends.store import UnitOfWork, tables

__all__ = ["Done", "Report", "build_report"]


@dataclass(frozen=True, slots=True)
class Done:
    """A suggestion customers made that was done: how many asked for it, and how many were told."""

    title: str
    note: str | None
    done_at: datetime
    asked: int
    told: int


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime
    until: datetime
    generated_at: datetime
    measures: Dashboard
    experiment: Experiment
    done: tuple[Done, ...]
    incidents: int
    feedback: int

    @property
    def empty(self) -> bool:
        """Nothing happened in the span: no incident, no case, no feedback, no grant, no suggestion done."""
        m = self.measures
        return not (self.incidents or m.overall.cases or self.feedback or m.spend_by_kind or self.done)


def build_report(
    uow: UnitOfWork,
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    outcomes: Sequence[Outcome],
    horizon: timedelta,
    currency: str,
) -> Report:
    """The report of [since, until), as known at `now` (the experiment's windows close by `now`, not `until`);
    the return on recovery sets remedies against the outcomes' spend (`spend_outcome`)."""
    measures = measures_between(uow, since=since, until=until, now=now, currency=currency)
    experiment = analyse(
        uow, outcomes, as_of=now, horizon=horizon, since=since, until=until, spend_outcome=spend_outcome(outcomes)
    )
    return Report(
        since,
        until,
        now,
        measures,
        experiment,
        _done(uow, since, until),
        _count(uow, tables.incidents, tables.incidents.c.failure_at, since, until),
        _count(uow, tables.feedback, tables.feedback.c.received_at, since, until, tables.feedback.c.spam.is_(False)),
    )


def _done(uow: UnitOfWork, since: datetime, until: datetime) -> tuple[Done, ...]:
    s, a = tables.suggestions, tables.suggestion_askers
    asked = sa.select(sa.func.count()).where(a.c.suggestion_id == s.c.id).scalar_subquery()
    told = sa.select(sa.func.count()).where(a.c.suggestion_id == s.c.id, a.c.notified_at.is_not(None)).scalar_subquery()
    rows = uow.execute(
        sa.select(s.c.title, s.c.note, s.c.done_at, asked.label("asked"), told.label("told"))
        .where(s.c.status == "done", s.c.done_at >= since, s.c.done_at < until)
        .order_by(s.c.done_at, s.c.id)
    ).all()
    return tuple(Done(r.title, r.note, r.done_at, int(r.asked), int(r.told)) for r in rows)


def _count(uow: UnitOfWork, table: sa.Table, at: sa.Column[Any], since: datetime, until: datetime, *where: Any) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(at >= since, at < until, *where)
    return int(uow.execute(query).scalar_one())
