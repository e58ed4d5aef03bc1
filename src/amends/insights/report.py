"""The report a CX lead forwards: for a span of time, the recovery and feedback measures week by week, what the
holdout experiment says recovery does for customers, and "you said, we did" (docs/insights.md#the-report).

`build_report` reads; `amends.insights.render` writes it as Markdown, HTML or PDF, and `GET /v1/metrics/report`
returns the same figures as JSON (`report_json`). Every figure's definition is in docs/insights.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from amends.insights.dashboard import Dashboard, measures_between
from amends.insights.experiment import Estimate, Experiment, Round, analyse
from amends.insights.outcomes import Outcome
from amends.store import UnitOfWork, tables

__all__ = ["Done", "Report", "build_report", "estimate_json", "report_json"]


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
    spend_outcome: str | None = None,
) -> Report:
    """The report of [since, until), as known at `now` (the experiment's windows close by `now`, not `until`)."""
    measures = measures_between(uow, since=since, until=until, now=now, currency=currency)
    experiment = analyse(
        uow, outcomes, as_of=now, horizon=horizon, since=since, until=until, spend_outcome=spend_outcome
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


# --- as JSON ---------------------------------------------------------------------------------------------------


def estimate_json(estimate: Estimate) -> dict[str, Any]:
    return {
        "outcome": estimate.outcome.id,
        "title": estimate.outcome.title,
        "kind": estimate.outcome.kind.value,
        "better": estimate.outcome.better,
        "group": estimate.group,
        "treated": {"units": estimate.treated.units, "mean": estimate.treated.mean},
        "held_out": {"units": estimate.held_out.units, "mean": estimate.held_out.mean},
        "difference": estimate.difference,
        "low": estimate.low,
        "high": estimate.high,
        "relative": estimate.relative,
        "relative_low": estimate.relative_low,
        "relative_high": estimate.relative_high,
        "method": estimate.method or None,
        "minimum_detectable_effect": estimate.mde,
        "cuped_variance_removed": estimate.cuped,
        "p_value": estimate.p_value,
        "verdict": estimate.verdict,
    }


def round_json(round_: Round) -> dict[str, Any]:
    retained = round_.retained
    return {
        "period": round_.period,
        "round": round_.number,
        "starts": round_.starts,
        "ends": round_.ends,
        "final": round_.final,
        "treated": round_.treated,
        "held_out": round_.held_out,
        "waiting": round_.waiting,
        "remedy_spend": round_.remedy_spend,
        "retained_spend": None
        if retained is None or retained.difference is None
        else {
            "estimate": retained.difference * round_.treated,
            "low": None if retained.low is None else retained.low * round_.treated,
            "high": None if retained.high is None else retained.high * round_.treated,
        },
        "estimates": [estimate_json(e) for e in round_.estimates],
    }


def report_json(report: Report) -> dict[str, Any]:
    """The report's figures, for `GET /v1/metrics/report`; None where there is nothing to measure."""
    m = report.measures
    return {
        "since": report.since,
        "until": report.until,
        "generated_at": report.generated_at,
        "empty": report.empty,
        "currency": m.currency,
        "incidents": report.incidents,
        "feedback": report.feedback,
        "cases": _summary_json(m.overall),
        "weeks": [{"week": w.label, "starts": w.start, **_summary_json(w.cases)} for w in m.weeks],
        "responses": [
            {
                "week": r.week,
                "received": r.received,
                "answered": r.answered,
                "response_rate": r.response_rate,
                "median_hours": r.median_hours,
                "within_sla": r.within_sla,
                "overdue": r.overdue,
            }
            for r in m.responses
        ],
        "ratings": [
            {"week": r.week, "csat": r.csat, "csat_answers": r.csat_answers, "nps": r.nps, "nps_answers": r.nps_answers}
            for r in m.ratings
        ],
        "remedy_spend_by_kind": [{"kind": kind, "cash_value": str(value)} for kind, value in m.spend_by_kind],
        "incidents_by_rule": [{"rule": rule, "incidents": n} for rule, n in m.incidents_by_rule],
        "experiment": {
            "as_of": report.experiment.as_of,
            "horizon_days": report.experiment.horizon / timedelta(days=1),
            "periods": {
                pid: {"plan": p["plan"], "started_at": p["started_at"]} for pid, p in report.experiment.periods.items()
            },
            "rounds": [round_json(r) for r in report.experiment.rounds],
        },
        "you_said_we_did": [
            {"title": d.title, "note": d.note, "done_at": d.done_at, "asked": d.asked, "told": d.told}
            for d in report.done
        ],
    }


def _summary_json(summary: Any) -> dict[str, Any]:
    def hours(value: timedelta | None) -> float | None:
        return None if value is None else value / timedelta(hours=1)

    return {
        "cases": summary.cases,
        "proactive": summary.proactive,
        "reactive": summary.reactive,
        "proactive_share": summary.proactive / summary.cases if summary.cases else None,
        "resolved": summary.resolved,
        "median_hours_to_first_contact": hours(summary.median_time_to_first_contact),
        "median_hours_to_resolution": hours(summary.median_time_to_resolution),
        "first_contact_resolution_rate": summary.first_contact_resolution_rate,
        "mean_contacts": summary.mean_contacts,
        "mean_handoffs": summary.mean_handoffs,
        "remedy_cost_total": str(summary.remedy_cost_total),
    }
