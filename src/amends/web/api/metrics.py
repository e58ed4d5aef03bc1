"""/v1/metrics: the report's figures as JSON (the same as `amends report` writes), and the holdout experiment's
estimates alone. Aggregates over every team: managers, admins, and keys with `metrics:read`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from amends.access import Scope
from amends.errors import InvalidInput
from amends.insights.experiment import analyse
from amends.insights.outcomes import (
    Outcome,
    check_event_types,
    known_event_types,
    outcomes_from_settings,
    spend_outcome,
)
from amends.insights.report import build_report, report_json, round_json
from amends.recover.actors import Actor
from amends.recover.roles import Role
from amends.store import UnitOfWork
from amends.web.deps import DB, reading, require
from amends.web.errors import RECOVERY_ERRORS

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
_Reader = Annotated[Actor, Depends(require(Scope.METRICS_READ))]
_Since = Annotated[datetime | None, Query(description="From this instant (default: 90 days before until).")]
_Until = Annotated[datetime | None, Query(description="Up to this instant, excluded (default: now).")]


@router.get("/report", responses=RECOVERY_ERRORS)
async def read_report(
    request: Request, db: DB, actor: _Reader, since: _Since = None, until: _Until = None
) -> dict[str, Any]:
    """Every figure of the report for [since, until): cases and their measures week by week, feedback responses and
    ratings, remedy spend by kind, incidents by rule, the holdout experiment's rounds with their estimates, and
    "you said, we did". Definitions: docs/insights.md. `empty` is true when nothing happened in the span."""
    start, end, now = _span(actor, since, until)
    outcomes, known = experiment_outcomes(request)
    settings = request.app.state.settings
    currency = request.app.state.recovery.policy.currency

    def run(uow: UnitOfWork) -> dict[str, Any]:
        check_event_types(uow, outcomes, known=known)
        report = build_report(uow, since=start, until=end, now=now, outcomes=outcomes,
                              horizon=settings.holdout_horizon, currency=currency,
                              spend_outcome=spend_outcome(outcomes))  # fmt: skip
        return report_json(report)

    return await reading(db, run)


@router.get("/uplift", responses=RECOVERY_ERRORS)
async def read_uplift(
    request: Request, db: DB, actor: _Reader, since: _Since = None, until: _Until = None
) -> dict[str, Any]:
    """The holdout experiment alone, for the incidents that failed in [since, until): each period's rounds, and per
    outcome (overall and per rule) treated and held-out means, the difference with its 95 % interval, the minimum
    detectable effect and the verdict (docs/insights.md#estimates)."""
    start, end, now = _span(actor, since, until)
    outcomes, known = experiment_outcomes(request)
    settings = request.app.state.settings

    def run(uow: UnitOfWork) -> dict[str, Any]:
        check_event_types(uow, outcomes, known=known)
        experiment = analyse(uow, outcomes, as_of=now, horizon=settings.holdout_horizon, since=start, until=end,
                             spend_outcome=spend_outcome(outcomes))  # fmt: skip
        return {
            "as_of": experiment.as_of,
            "horizon_days": experiment.horizon / timedelta(days=1),
            "empty": experiment.empty,
            "rounds": [round_json(r) for r in experiment.rounds],
        }

    return await reading(db, run)


def _span(actor: Actor, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime, datetime]:
    if actor.staff is not None:  # the figures span every team
        actor.at_least(Role.MANAGER, "reading the metrics")
    now = datetime.now(UTC)
    end = until or now
    start = since or end - timedelta(days=90)
    for name, value in (("since", start), ("until", end)):
        if value.tzinfo is None:
            raise InvalidInput(name, "needs a time zone, e.g. 2026-01-01T00:00:00Z")
    if start >= end:
        raise InvalidInput("since", "must be before until")
    return start, end, now


def experiment_outcomes(request: Request) -> tuple[tuple[Outcome, ...], set[str]]:
    """The outcomes and the event types known from the rules and settings, read once per app."""
    state = request.app.state
    if not hasattr(state, "outcomes"):
        settings = state.settings
        state.outcomes = (outcomes_from_settings(settings), known_event_types(settings))
    found: tuple[tuple[Outcome, ...], set[str]] = state.outcomes
    return found
