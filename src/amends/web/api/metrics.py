"""/v1/metrics: the report's figures as JSON (the same as `amends report` writes), and the holdout experiment's
estimates alone. Aggregates over every team: managers, admins, and keys with `metrics:read`.

The response models are built from the domain's objects (`Report`, `Round`, `Estimate`): they are the one
definition of the JSON's shape, and of its schema in /openapi.json."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from amends.access import Scope
from amends.detect.service import known_event_types
from amends.errors import InvalidInput
from amends.insights.experiment import Estimate, Experiment, Round, Verdict, analyse
from amends.insights.outcomes import (
    Kind,
    Outcome,
    check_event_types,
    outcomes_from_settings,
    spend_outcome,
)
from amends.insights.report import Report, build_report
from amends.recover.actors import Actor
from amends.recover.measures import MeasuresSummary
from amends.recover.roles import Role
from amends.store import UnitOfWork
from amends.web.api._inputs import Instant
from amends.web.deps import DB, reading, require
from amends.web.errors import RECOVERY_ERRORS

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
_Reader = Annotated[Actor, Depends(require(Scope.METRICS_READ))]
_Since = Annotated[Instant | None, Query(description="From this instant (default: 90 days before until).")]
_Until = Annotated[Instant | None, Query(description="Up to this instant, excluded (default: now).")]
_VERDICTS = [value for name, value in vars(Verdict).items() if name.isupper()]

# --- the response: every figure's definition is in docs/insights.md ---------------------------------------------


class ArmOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    units: int = Field(description="Units whose outcome window has closed (and, for a mean, with a value).")
    mean: float | None = Field(description="The share (happened, absent) or the mean per unit; null without units.")


class EstimateOut(BaseModel):
    """One outcome's effect in one group: treated minus held out (docs/insights.md#estimates)."""

    outcome: str = Field(description="The outcome's id.")
    title: str
    kind: Kind = Field(description="happened, absent (shares), count, sum or mean.")
    better: Literal["higher", "lower"] = Field(description="Which way is good.")
    group: str = Field(description="`all`, a rule's id, or `remedy: <kind>`; per-rule estimates are exploratory.")
    treated: ArmOut
    held_out: ArmOut
    difference: float | None = Field(description="Treated minus held out; null when an arm has no unit.")
    low: float | None = Field(description="The 95 % interval of the difference; null when it cannot be measured.")
    high: float | None
    relative: float | None = Field(description="The difference as a share of the held-out mean.")
    relative_low: float | None = Field(
        description="The interval of treated / held out - 1: for a share estimated without CUPED or strata only."
    )
    relative_high: float | None
    method: str | None = Field(description="How the interval was found (Newcombe, bootstrap, CUPED, stratified).")
    minimum_detectable_effect: float | None = Field(
        description="The smallest difference a two-sided test at 5 % finds with 80 % power, given these arms."
    )
    cuped_variance_removed: float | None = Field(
        description="The share of variance CUPED removed, when it was used (it removed at least 5 %)."
    )
    p_value: float | None
    verdict: str = Field(
        description="Given once the round's horizon is over and every window has closed; `interim` before.",
        json_schema_extra={"enum": _VERDICTS},
    )

    @classmethod
    def of(cls, estimate: Estimate) -> EstimateOut:
        outcome = estimate.outcome
        return cls(
            outcome=outcome.id,
            title=outcome.title,
            kind=outcome.kind,
            better=outcome.better,
            group=estimate.group,
            treated=ArmOut.model_validate(estimate.treated),
            held_out=ArmOut.model_validate(estimate.held_out),
            difference=estimate.difference,
            low=estimate.low,
            high=estimate.high,
            relative=estimate.relative,
            relative_low=estimate.relative_low,
            relative_high=estimate.relative_high,
            method=estimate.method or None,
            minimum_detectable_effect=estimate.mde,
            cuped_variance_removed=estimate.cuped,
            p_value=estimate.p_value,
            verdict=estimate.verdict,
        )


class RetainedSpendOut(BaseModel):
    estimate: float = Field(description="The spend outcome's difference times the treated units.")
    low: float | None = Field(description="Its 95 % interval, scaled the same way.")
    high: float | None


class RoundOut(BaseModel):
    """One fixed-horizon experiment: the units of one horizon of one period."""

    period: str = Field(description="The holdout settings' period (a hash of them).")
    round: int = Field(description="1 for the period's first horizon.")
    starts: datetime
    ends: datetime
    final: bool = Field(description="Every unit's windows have closed, for every outcome; before that, interim.")
    treated: int
    held_out: int
    waiting: int = Field(description="Units whose window has not closed yet, by the longest outcome.")
    remedy_spend: float = Field(
        description="What recovery added to the remedy bill: the cash value granted per treated unit minus that per "
        "held-out unit, times the treated units."
    )
    retained_spend: RetainedSpendOut | None = Field(
        description="What the treated customers spent beyond what the held-out ones did; null without a spend "
        "outcome's difference."
    )
    estimates: list[EstimateOut] = Field(description="Per outcome: overall, per rule and per remedy kind.")

    @classmethod
    def of(cls, round_: Round) -> RoundOut:
        retained = round_.retained
        treated = round_.treated
        return cls(
            period=round_.period,
            round=round_.number,
            starts=round_.starts,
            ends=round_.ends,
            final=round_.final,
            treated=treated,
            held_out=round_.held_out,
            waiting=round_.waiting,
            remedy_spend=round_.remedy_spend,
            retained_spend=None
            if retained is None or retained.difference is None
            else RetainedSpendOut(
                estimate=retained.difference * treated,
                low=None if retained.low is None else retained.low * treated,
                high=None if retained.high is None else retained.high * treated,
            ),
            estimates=[EstimateOut.of(e) for e in round_.estimates],
        )


class PeriodOut(BaseModel):
    plan: dict[str, Any] = Field(
        description="The holdout settings as recorded when the period started (recover/holdout.py): `share`, "
        "`shares` (per `RULE@SEVERITY`, `RULE`, `*@SEVERITY`), `ceiling`, and the salt only as `salt_hash`."
    )
    started_at: datetime


class ExperimentOut(BaseModel):
    as_of: datetime = Field(description="When the windows were measured: a window closed by then counts.")
    horizon_days: float = Field(description="The length of a round (holdout_horizon).")
    periods: dict[str, PeriodOut] = Field(description="Each period's settings, by its id.")
    rounds: list[RoundOut]


class UpliftOut(BaseModel):
    """The holdout experiment alone (docs/insights.md#estimates)."""

    as_of: datetime = Field(description="When the windows were measured: a window closed by then counts.")
    horizon_days: float = Field(description="The length of a round (holdout_horizon).")
    empty: bool = Field(description="No round has a unit in the span.")
    rounds: list[RoundOut]

    @classmethod
    def of(cls, experiment: Experiment) -> UpliftOut:
        return cls(
            as_of=experiment.as_of,
            horizon_days=experiment.horizon / timedelta(days=1),
            empty=experiment.empty,
            rounds=[RoundOut.of(r) for r in experiment.rounds],
        )


class CaseFiguresOut(BaseModel):
    """The measures of the cases opened in a span; held-out cases nobody worked are left out."""

    cases: int
    proactive: int = Field(description="Opened by an incident.")
    reactive: int = Field(description="Opened by a complaint or negative feedback.")
    proactive_share: float | None = Field(description="Proactive cases / cases; null without cases.")
    resolved: int
    median_hours_to_first_contact: float | None = Field(
        description="Of the cases with a first contact (our first outbound contact)."
    )
    median_hours_to_resolution: float | None
    first_contact_resolution_rate: float | None = Field(
        description="Of the resolved cases: resolved by their first owner with no handoff, approval or reopening."
    )
    mean_contacts: float | None = Field(description="Inbound and outbound, per case.")
    mean_handoffs: float | None = Field(description="Owner changes after the first assignment, per case.")
    remedy_cost_total: Decimal = Field(description="The cash value granted on these cases, net of reversals.")

    @classmethod
    def of(cls, summary: MeasuresSummary, **more: Any) -> Self:
        def hours(value: timedelta | None) -> float | None:
            return None if value is None else value / timedelta(hours=1)

        return cls(
            cases=summary.cases,
            proactive=summary.proactive,
            reactive=summary.reactive,
            proactive_share=summary.proactive / summary.cases if summary.cases else None,
            resolved=summary.resolved,
            median_hours_to_first_contact=hours(summary.median_time_to_first_contact),
            median_hours_to_resolution=hours(summary.median_time_to_resolution),
            first_contact_resolution_rate=summary.first_contact_resolution_rate,
            mean_contacts=summary.mean_contacts,
            mean_handoffs=summary.mean_handoffs,
            remedy_cost_total=summary.remedy_cost_total,
            **more,
        )


class _Week(BaseModel):
    week: str = Field(description="The ISO week, e.g. 2026-W47.")
    starts: datetime = Field(description="Its Monday (UTC), or the span's start for the first week.")


class WeekFiguresOut(CaseFiguresOut, _Week):  # the last base's fields come first: `week`, `starts`, then the rest
    """The measures of the cases opened in one week."""


class ResponseWeekOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    week: str = Field(description="The ISO week of arrival, e.g. 2026-W47.")
    received: int = Field(description="Feedback needing an answer (spam left out).")
    answered: int
    response_rate: float | None
    median_hours: float | None = Field(description="Time to respond, of those answered.")
    within_sla: float | None = Field(description="Answered by its due time, of those answered or past due.")
    overdue: int = Field(description="Not answered and past due now.")


class RatingWeekOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    week: str = Field(description="The ISO week of the answers.")
    csat: float | None = Field(description="The share of CSAT answers (1 to 5) that rate 4 or 5.")
    csat_answers: int
    nps: float | None = Field(description="% promoters (9, 10) minus % detractors (0 to 6) of the NPS answers.")
    nps_answers: int


class SpendOut(BaseModel):
    kind: str
    cash_value: Decimal = Field(description="Of the ledger entries made in the span, net of reversals.")


class RuleIncidentsOut(BaseModel):
    rule: str
    incidents: int


class DoneOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    title: str
    note: str | None = Field(description="What was done.")
    done_at: datetime
    asked: int = Field(description="Customers who asked for it.")
    told: int = Field(description="Of those, how many were told.")


class ReportOut(BaseModel):
    """Every figure of the report (docs/insights.md#the-report); null where there is nothing to measure."""

    since: datetime
    until: datetime
    generated_at: datetime
    empty: bool = Field(description="Nothing happened in the span: no incident, case, feedback, grant or suggestion.")
    currency: str = Field(description="The currency of every cash value.")
    incidents: int = Field(description="Incidents whose failure is in the span.")
    feedback: int = Field(description="Feedback received in the span, spam left out.")
    cases: CaseFiguresOut
    weeks: list[WeekFiguresOut]
    responses: list[ResponseWeekOut] = Field(description="Per week of arrival, every channel together.")
    ratings: list[RatingWeekOut]
    remedy_spend_by_kind: list[SpendOut] = Field(description="Largest first.")
    incidents_by_rule: list[RuleIncidentsOut] = Field(description="Most first.")
    experiment: ExperimentOut
    you_said_we_did: list[DoneOut] = Field(description="Suggestions marked done in the span.")

    @classmethod
    def of(cls, report: Report) -> ReportOut:
        m, experiment = report.measures, report.experiment
        return cls(
            since=report.since,
            until=report.until,
            generated_at=report.generated_at,
            empty=report.empty,
            currency=m.currency,
            incidents=report.incidents,
            feedback=report.feedback,
            cases=CaseFiguresOut.of(m.overall),
            weeks=[WeekFiguresOut.of(w.cases, week=w.label, starts=w.start) for w in m.weeks],
            responses=[ResponseWeekOut.model_validate(r) for r in m.responses],
            ratings=[RatingWeekOut.model_validate(r) for r in m.ratings],
            remedy_spend_by_kind=[SpendOut(kind=kind, cash_value=value) for kind, value in m.spend_by_kind],
            incidents_by_rule=[RuleIncidentsOut(rule=rule, incidents=n) for rule, n in m.incidents_by_rule],
            experiment=ExperimentOut(
                as_of=experiment.as_of,
                horizon_days=experiment.horizon / timedelta(days=1),
                periods={pid: PeriodOut.model_validate(p) for pid, p in experiment.periods.items()},
                rounds=[RoundOut.of(r) for r in experiment.rounds],
            ),
            you_said_we_did=[DoneOut.model_validate(d) for d in report.done],
        )


@router.get("/report", response_model=ReportOut, responses=RECOVERY_ERRORS)
async def read_report(
    request: Request, db: DB, actor: _Reader, since: _Since = None, until: _Until = None
) -> ReportOut:
    """Every figure of the report for [since, until): cases and their measures week by week, feedback responses and
    ratings, remedy spend by kind, incidents by rule, the holdout experiment's rounds with their estimates, and
    "you said, we did". Definitions: docs/insights.md. `empty` is true when nothing happened in the span."""
    start, end, now = _span(actor, since, until)
    outcomes, known = experiment_outcomes(request)
    settings = request.app.state.settings
    currency = request.app.state.recovery.policy.currency

    def run(uow: UnitOfWork) -> ReportOut:
        check_event_types(uow, outcomes, known=known)
        report = build_report(uow, since=start, until=end, now=now, outcomes=outcomes,
                              horizon=settings.holdout_horizon, currency=currency)  # fmt: skip
        return ReportOut.of(report)

    return await reading(db, run)


@router.get("/uplift", response_model=UpliftOut, responses=RECOVERY_ERRORS)
async def read_uplift(
    request: Request, db: DB, actor: _Reader, since: _Since = None, until: _Until = None
) -> UpliftOut:
    """The holdout experiment alone, for the incidents that failed in [since, until): each period's rounds, and per
    outcome (overall and per rule) treated and held-out means, the difference with its 95 % interval, the minimum
    detectable effect and the verdict (docs/insights.md#estimates)."""
    start, end, now = _span(actor, since, until)
    outcomes, known = experiment_outcomes(request)
    settings = request.app.state.settings

    def run(uow: UnitOfWork) -> UpliftOut:
        check_event_types(uow, outcomes, known=known)
        experiment = analyse(uow, outcomes, as_of=now, horizon=settings.holdout_horizon, since=start, until=end,
                             spend_outcome=spend_outcome(outcomes))  # fmt: skip
        return UpliftOut.of(experiment)

    return await reading(db, run)


def _span(actor: Actor, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime, datetime]:
    if actor.staff is not None:  # the figures span every team
        actor.at_least(Role.MANAGER, "reading the metrics")
    now = datetime.now(UTC)
    end = until or now
    start = since or end - timedelta(days=90)
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
