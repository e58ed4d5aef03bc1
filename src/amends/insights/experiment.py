"""The holdout experiment's results: for each outcome, the difference between customers whose incident was treated
(proactive recovery) and those held out, with its 95 % confidence interval, the minimum detectable effect, and a
verdict only when the experiment is big enough and its horizon is over (docs/insights.md#estimates).

Units are the draws of recover/holdout.py, one per incident that opened a proactive case while an experiment ran;
each customer counts once per period, by their first draw (the arm of a later one is as random, but whether it is
drawn at all depends on what the first one's arm did). A unit counts once its outcome window has closed
(`failure_at + within` before `as_of`). The experiment is analysed per period (one set of holdout settings) and
per round: the draws of each `horizon` from the period's start form one fixed-horizon experiment, looked at for a
verdict once, when every window of the round has closed.
Earlier looks are interim: their intervals are shown, without a verdict, because looking every day at a
fixed-horizon test would find "significant" differences far more often than 5 % of the time.

The measuring is done in the database (one grouped join per outcome source over a temporary table of the units'
windows) and the estimating by scipy and statsmodels: Newcombe's hybrid score interval (from Wilson's) for a
difference of proportions, a bootstrap for sums and means, CUPED with each customer's same measure over the same
window before the incident when it narrows the interval (then a Welch interval on the adjusted values), and a
normal approximation across strata when a period holds out different shares of different rules.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import sqlalchemy as sa
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from amends.errors import InvalidInput
from amends.insights.outcomes import Kind, Outcome, Source
from amends.store import UnitOfWork, tables
from amends.store.types import UTCDateTime

__all__ = [
    "ALPHA",
    "MIN_PER_ARM",
    "POWER",
    "Arm",
    "Estimate",
    "Experiment",
    "Round",
    "Verdict",
    "analyse",
    "estimate",
]

ALPHA = 0.05
POWER = 0.8
MIN_PER_ARM = 30  # fewer units in an arm than this and no interval is trusted
_BOOTSTRAP_RESAMPLES = 2_000
_CUPED_GAIN = 0.05  # CUPED is used when it removes at least this share of the variance
_SEED = 20_261_124  # the bootstrap's: the same data give the same interval
_MICROSECOND = timedelta(microseconds=1)


class Verdict:
    BETTER = "better"
    WORSE = "worse"
    NO_DIFFERENCE = "no detectable difference"
    TOO_SMALL = "too small to tell"
    INTERIM = "interim: no verdict before the horizon"
    NO_DATA = "no data"


@dataclass(frozen=True, slots=True)
class Arm:
    units: int
    mean: float | None  # the share (happened, absent) or mean per customer


@dataclass(frozen=True, slots=True)
class Estimate:
    """One outcome's effect in one group (every unit, a rule's, a remedy kind's): treated minus held out."""

    outcome: Outcome
    group: str
    treated: Arm
    held_out: Arm
    difference: float | None
    low: float | None
    high: float | None
    method: str
    mde: float | None  # the smallest difference this sample would detect with 80 % power at 5 %
    cuped: float | None  # the share of variance CUPED removed, when used
    p_value: float | None
    verdict: str
    relative_low: float | None = None  # the interval of treated / held out - 1, for shares (a ratio of proportions)
    relative_high: float | None = None

    @property
    def relative(self) -> float | None:
        """The difference as a share of the held-out mean."""
        if self.difference is None or not self.held_out.mean:
            return None
        return self.difference / self.held_out.mean


@dataclass(frozen=True, slots=True)
class Round:
    """One fixed-horizon experiment: the draws of one horizon of one period."""

    period: str
    number: int
    starts: datetime
    ends: datetime
    final: bool  # every unit's windows have closed, for every outcome (each outcome's verdict waits for its own)
    treated: int
    held_out: int
    waiting: int  # units whose window has not closed yet, by the longest outcome
    estimates: tuple[Estimate, ...]
    remedy_spend: float  # what recovery cost in remedies: treated minus held out per unit, times the treated
    retained: Estimate | None  # the spend outcome's estimate: its difference times the treated is what recovery kept
    earliest: datetime  # the first failure of the round's units: the first window closes `within` after it
    units: pl.DataFrame = field(compare=False, repr=False)  # unit, customer_id, rule_id, failure_at, held_out


@dataclass(frozen=True, slots=True)
class Experiment:
    as_of: datetime
    horizon: timedelta
    periods: dict[str, dict[str, Any]]  # each period's settings
    rounds: tuple[Round, ...]
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.rounds

    def summary(self) -> Experiment:
        """The same results without the rounds' per-unit frames: what a cache keeps, whose size then does not grow
        with the number of customers drawn."""
        rounds = tuple(replace(r, units=r.units.clear()) for r in self.rounds)
        return replace(self, rounds=rounds)


def analyse(
    uow: UnitOfWork,
    outcomes: Sequence[Outcome],
    *,
    as_of: datetime,
    horizon: timedelta,
    since: datetime | None = None,
    until: datetime | None = None,
    by_rule: bool = True,
    spend_outcome: str | None = None,
) -> Experiment:
    """Every period and round with draws whose incidents failed in [since, until), measured as of `as_of`."""
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since", "must be before until")
    if horizon <= timedelta(0):
        raise InvalidInput("horizon", "must be positive")
    periods = {
        row.id: {"plan": row.plan, "started_at": row.started_at}
        for row in uow.execute(sa.select(tables.holdout_periods))
    }
    units = _units(uow)
    if units.is_empty():
        return Experiment(as_of, horizon, periods, (), tuple(outcomes))
    started = pl.DataFrame(
        {"period": list(periods), "started_at": [p["started_at"] for p in periods.values()]},
        schema={"period": pl.String, "started_at": pl.Datetime("us", "UTC")},
    )
    units = units.join(started, on="period", how="left").with_columns(
        ((pl.col("failure_at") - pl.col("started_at")).dt.total_microseconds() // (horizon // _MICROSECOND))
        .cast(pl.Int64)
        .clip(lower_bound=0)
        .alias("round")
    )
    if since is not None or until is not None:
        # Whole rounds only: a round is one experiment, looked at as a whole; a slice of it is not.
        units = _whole_rounds(units, horizon, since, until)
        if units.is_empty():
            return Experiment(as_of, horizon, periods, (), tuple(outcomes))
    longest = max(outcome.within for outcome in outcomes)
    if by_rule:
        units = units.join(_remedy_kinds(uow, units), on="unit", how="left")
    else:
        units = units.with_columns(pl.lit(None, dtype=pl.String).alias("remedy_kind"))
    values = {outcome.id: _measure(uow, units, outcome, as_of) for outcome in outcomes}
    spend = _remedy_spend(uow, units)
    rounds = []
    for (period, number), group in sorted(units.group_by(["period", "round"]), key=_by_key):
        period_start = periods[str(period)]["started_at"]
        starts = period_start + horizon * int(number)
        ends = starts + horizon
        final = as_of >= ends + longest
        ids = group["unit"]
        estimates = []
        for outcome in outcomes:
            measured = values[outcome.id].filter(pl.col("unit").is_in(ids.implode()))
            closed = as_of >= ends + outcome.within  # this outcome's look: every window of the round has closed
            estimates.append(estimate(measured, outcome, "all", final=closed))
            if by_rule:
                for rule in sorted(measured["rule_id"].unique().to_list()):
                    estimates.append(estimate(measured.filter(pl.col("rule_id") == rule), outcome, rule, final=closed))
                for kind in sorted(measured["remedy_kind"].drop_nulls().unique().to_list()):
                    of_kind = measured.filter(pl.col("remedy_kind") == kind)
                    estimates.append(estimate(of_kind, outcome, f"remedy: {kind}", final=closed))
        waiting = int((group["failure_at"] > as_of - longest).sum())
        round_spend = _incremental_spend(group.select("unit", "held_out").join(spend, on="unit", how="left"))
        treated = int((~group["held_out"]).sum())
        retained = next(
            (e for e in estimates if e.group == "all" and e.outcome.id == spend_outcome and e.difference is not None),
            None,
        )
        rounds.append(
            Round(
                str(period),
                int(number) + 1,
                starts,
                ends,
                final,
                treated,
                len(group) - treated,
                waiting,
                tuple(estimates),
                round_spend,
                retained,
                group["failure_at"].min(),  # type: ignore[arg-type]  # a Datetime column's minimum
                group.select("unit", "customer_id", "rule_id", "failure_at", "held_out"),
            )
        )
    return Experiment(as_of, horizon, periods, tuple(rounds), tuple(outcomes))


def estimate(measured: pl.DataFrame, outcome: Outcome, group: str, *, final: bool) -> Estimate:
    """The effect on one outcome of one group's units: a frame with `held_out`, `share` (the stratum), `y` (null:
    not measurable for the unit, e.g. a mean with no value) and `x` (the same before the incident, for CUPED)."""
    measured = measured.filter(pl.col("y").is_not_null())
    treated = measured.filter(~pl.col("held_out"))
    held = measured.filter(pl.col("held_out"))
    arms = Arm(len(treated), _mean(treated["y"])), Arm(len(held), _mean(held["y"]))
    if not len(treated) or not len(held):
        return Estimate(outcome, group, *arms, None, None, None, "", None, None, None, Verdict.NO_DATA)
    if len(treated) < 2 or len(held) < 2:  # no spread to measure: no interval
        difference = (arms[0].mean or 0.0) - (arms[1].mean or 0.0)
        return Estimate(outcome, group, *arms, difference, None, None, "", None, None, None, Verdict.TOO_SMALL)
    strata = measured["share"].unique().to_list()
    y_t, y_h = treated["y"].to_numpy().astype(float), held["y"].to_numpy().astype(float)
    mde = _mde_share(y_t, y_h) if outcome.kind.is_share else _mde(y_t, y_h)
    cuped = None
    relative: tuple[float | None, float | None] = (None, None)
    if len(strata) > 1:
        stratified = _stratified(measured)
        if stratified is None:
            difference = (arms[0].mean or 0.0) - (arms[1].mean or 0.0)
            return Estimate(outcome, group, *arms, difference, None, None, "", mde, None, None, Verdict.TOO_SMALL)
        difference, low, high, p_value = stratified
        method = "stratified by share, normal approximation"
    else:
        gain, adjusted = _cuped(measured)
        if gain is not None and gain >= _CUPED_GAIN and adjusted is not None:
            cuped = gain
            a_t, a_h = adjusted
            compared = CompareMeans(DescrStatsW(a_t), DescrStatsW(a_h))
            low, high = compared.tconfint_diff(alpha=ALPHA, usevar="unequal")
            p_value = float(compared.ttest_ind(usevar="unequal")[1])
            difference = float(a_t.mean() - a_h.mean())
            method = f"CUPED (pre-incident {outcome.id}), Welch"
            mde = _mde(a_t, a_h) if not outcome.kind.is_share else min(mde or math.inf, _mde(a_t, a_h) or math.inf)
        elif outcome.kind.is_share:
            count_t, count_h = int(y_t.sum()), int(y_h.sum())
            low, high = confint_proportions_2indep(
                count_t, len(y_t), count_h, len(y_h), method="newcomb", compare="diff", alpha=ALPHA
            )
            difference = count_t / len(y_t) - count_h / len(y_h)
            p_value = float(stats.fisher_exact([[count_t, len(y_t) - count_t], [count_h, len(y_h) - count_h]])[1])
            method = "Newcombe (Wilson score)"
            if count_h:
                relative = _relative_interval(count_t, len(y_t), count_h, len(y_h))
        else:
            result = stats.bootstrap(
                (y_t, y_h),
                _difference_of_means,
                n_resamples=_BOOTSTRAP_RESAMPLES,
                confidence_level=1 - ALPHA,
                method="percentile",
                vectorized=True,
                batch=max(1, 20_000_000 // max(1, len(y_t) + len(y_h))),
                rng=np.random.default_rng(_SEED),
            )
            low, high = result.confidence_interval
            difference = float(y_t.mean() - y_h.mean())
            p_value = float(stats.ttest_ind(y_t, y_h, equal_var=False).pvalue)
            method = "bootstrap (percentile)"
    low, high = float(low), float(high)
    verdict = _verdict(outcome, arms, difference, low, high, mde, final)
    return Estimate(outcome, group, *arms, difference, low, high, method, mde, cuped, p_value, verdict, *relative)


def _verdict(
    outcome: Outcome, arms: tuple[Arm, Arm], difference: float, low: float, high: float, mde: float | None, final: bool
) -> str:
    treated, held = arms
    scale = max(abs(treated.mean or 0.0), abs(held.mean or 0.0))
    if min(treated.units, held.units) < MIN_PER_ARM or mde is None or math.isnan(mde) or mde >= scale > 0:
        return Verdict.TOO_SMALL
    if not final:
        return Verdict.INTERIM
    if low <= 0 <= high:
        return Verdict.NO_DIFFERENCE
    good = (difference > 0) == outcome.higher_is_better
    return Verdict.BETTER if good else Verdict.WORSE


def _by_key(item: tuple[tuple[Any, ...], pl.DataFrame]) -> tuple[str, int]:
    return str(item[0][0]), int(item[0][1])


def _difference_of_means(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(a.mean(axis=axis) - b.mean(axis=axis))


def _mean(values: pl.Series) -> float | None:
    mean = values.mean()
    return None if mean is None else float(mean)  # type: ignore[arg-type]


def _mde(y_t: np.ndarray, y_h: np.ndarray) -> float | None:
    """The smallest difference a two-sided test at ALPHA finds with POWER, given these arms' sizes and spread."""
    if len(y_t) < 2 or len(y_h) < 2:
        return None
    error = math.sqrt(y_t.var(ddof=1) / len(y_t) + y_h.var(ddof=1) / len(y_h))
    return float((stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)) * error)


def _relative_interval(count_t: int, n_t: int, count_h: int, n_h: int) -> tuple[float | None, float | None]:
    """The interval of the ratio of the shares, minus 1: the score interval (Koopman's; it handles a count of 0),
    or, where statsmodels' root finding gives no real answer, the log interval with the 0.5 correction; None when
    neither holds the estimate itself."""
    ratio = (count_t / n_t) / (count_h / n_h)
    for method in ("score", "log-adjusted"):
        low, high = confint_proportions_2indep(count_t, n_t, count_h, n_h, method=method, compare="ratio", alpha=ALPHA)
        if np.iscomplexobj(low) or np.iscomplexobj(high) or not (math.isfinite(low) and math.isfinite(high)):
            continue
        if low <= ratio <= high:  # at a share of 0 or 1 a method can miss its own estimate: then the next one
            return float(low) - 1, float(high) - 1
    return None, None


def _mde_share(y_t: np.ndarray, y_h: np.ndarray) -> float | None:
    """For a share: the smallest rise or fall from the held-out share that a two-sided test at ALPHA finds with
    POWER (Cohen's h, by statsmodels, turned back into a difference at the held-out share), so that a share of 0
    in both arms does not claim to detect anything."""
    if len(y_t) < 2 or len(y_h) < 2:
        return None
    h = NormalIndPower().solve_power(nobs1=len(y_t), ratio=len(y_h) / len(y_t), alpha=ALPHA, power=POWER)
    base = math.asin(math.sqrt(float(y_h.mean())))
    up = math.sin(min(math.pi / 2, base + h / 2)) ** 2
    down = math.sin(max(0.0, base - h / 2)) ** 2
    held = float(y_h.mean())
    return max(up - held, held - down) if held > 0 else up - held


def _cuped(measured: pl.DataFrame) -> tuple[float | None, tuple[np.ndarray, np.ndarray] | None]:
    """The share of the outcome's variance the pre-incident covariate explains, and the adjusted outcomes of the
    treated and held-out arms (θ pooled over both: the draw makes the covariate independent of the arm)."""
    with_x = measured.filter(pl.col("x").is_not_null())
    if len(with_x) != len(measured) or len(measured) < 2 * MIN_PER_ARM:
        return None, None
    y = measured["y"].to_numpy().astype(float)
    x = measured["x"].to_numpy().astype(float)
    if x.var() == 0 or y.var() == 0:
        return None, None
    theta = np.cov(y, x)[0, 1] / x.var(ddof=1)
    adjusted = y - theta * (x - x.mean())
    gain = 1 - adjusted.var() / y.var()
    held = measured["held_out"].to_numpy()
    return float(gain), (adjusted[~held], adjusted[held])


def _stratified(measured: pl.DataFrame) -> tuple[float, float, float, float] | None:
    """Post-stratified difference over the shares of a period: each stratum's difference, weighted by its units,
    over the strata with at least two units in each arm; None when there is none."""
    usable = []
    for _share, stratum in measured.group_by("share"):
        y_t = stratum.filter(~pl.col("held_out"))["y"].to_numpy().astype(float)
        y_h = stratum.filter(pl.col("held_out"))["y"].to_numpy().astype(float)
        if len(y_t) >= 2 and len(y_h) >= 2:  # a stratum without spread in both arms says nothing
            usable.append((y_t, y_h))
    if not usable:
        return None
    total = sum(len(y_t) + len(y_h) for y_t, y_h in usable)
    difference = variance = 0.0
    for y_t, y_h in usable:
        weight = (len(y_t) + len(y_h)) / total
        difference += weight * (y_t.mean() - y_h.mean())
        variance += weight**2 * (y_t.var(ddof=1) / len(y_t) + y_h.var(ddof=1) / len(y_h))
    error = math.sqrt(variance)
    z = stats.norm.ppf(1 - ALPHA / 2)
    p_value = float(2 * stats.norm.sf(abs(difference) / error)) if error else 1.0
    return difference, difference - z * error, difference + z * error, p_value


# --- measuring, in the database ------------------------------------------------------------------------------


def _whole_rounds(
    units: pl.DataFrame, horizon: timedelta, since: datetime | None, until: datetime | None
) -> pl.DataFrame:
    """The units of the rounds that overlap [since, until)."""
    starts = pl.col("started_at") + pl.duration(microseconds=pl.col("round") * (horizon // _MICROSECOND))
    keep = pl.lit(True)
    if until is not None:
        keep = keep & (starts < until)
    if since is not None:
        keep = keep & (starts + horizon > since)
    return units.filter(keep)


_SLICE_ROWS = 10_000  # rows held as Python objects at once while units are read or written


def _units(uow: UnitOfWork) -> pl.DataFrame:
    d = tables.holdout_draws
    query = sa.select(d.c.incident_id, d.c.case_id, d.c.customer_id, d.c.rule_id, d.c.severity, d.c.failure_at,
                      d.c.period, d.c.share, d.c.held_out)  # fmt: skip
    result = uow.execute(query.order_by(d.c.period, d.c.customer_id, d.c.drawn_at, d.c.incident_id))
    schema: dict[str, Any] = {
        "unit": pl.Int64,
        "case_id": pl.Int64,
        "customer_id": pl.String,
        "rule_id": pl.String,
        "severity": pl.Int64,
        "failure_at": pl.Datetime("us", "UTC"),
        "period": pl.String,
        "share": pl.Float64,
        "held_out": pl.Boolean,
    }
    # Read in slices, each made columnar at once: the rows as Python objects never all exist together.
    parts = [pl.DataFrame([tuple(row) for row in rows], schema=schema, orient="row")
             for rows in result.partitions(_SLICE_ROWS)]  # fmt: skip
    drawn = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    # One unit per customer and period: their first drawn incident, over the whole period, before any span is
    # chosen. A later one's draw is as random, but whether it is drawn at all depends on the first one's arm (a
    # treated case resolved sooner lets the next incident open a case of its own; an open held-out case takes it
    # in), and its customer has already been treated or not.
    return drawn.unique(subset=["period", "customer_id"], keep="first", maintain_order=True)


def _measure(uow: UnitOfWork, units: pl.DataFrame, outcome: Outcome, as_of: datetime) -> pl.DataFrame:
    """Per unit whose window closed by `as_of`: y (the outcome in the window after the incident) and x (the same
    in the window before it)."""
    closed = units.filter(pl.col("failure_at") <= as_of - outcome.within)
    windows = closed.select(
        "unit",
        "customer_id",
        (pl.col("failure_at") - outcome.within).alias("pre_from"),
        pl.col("failure_at").alias("at"),
        (pl.col("failure_at") + outcome.within).alias("until"),
    )
    counts = _counted(uow, windows, outcome)
    joined = closed.join(counts, on="unit", how="left").with_columns(pl.col("^(post|pre)_.*$").fill_null(0))
    if outcome.kind is Kind.HAPPENED:
        y, x = pl.col("post_n") > 0, pl.col("pre_n") > 0
    elif outcome.kind is Kind.ABSENT:
        y, x = pl.col("post_n") == 0, pl.col("pre_n") == 0
    elif outcome.kind is Kind.COUNT:
        y, x = pl.col("post_n"), pl.col("pre_n")
    elif outcome.kind is Kind.SUM:
        y, x = pl.col("post_sum"), pl.col("pre_sum")
    else:
        y = pl.when(pl.col("post_v") > 0).then(pl.col("post_sum") / pl.col("post_v"))
        x = pl.when(pl.col("pre_v") > 0).then(pl.col("pre_sum") / pl.col("pre_v"))
    return joined.select(
        "unit",
        "rule_id",
        "remedy_kind",
        "share",
        "held_out",
        y.cast(pl.Float64).alias("y"),
        x.cast(pl.Float64).alias("x"),
    )


def _counted(uow: UnitOfWork, windows: pl.DataFrame, outcome: Outcome) -> pl.DataFrame:
    """Rows and values of the outcome's sources in each unit's windows, grouped in the database."""
    schema: dict[str, pl.DataType] = dict.fromkeys(
        ("post_n", "post_sum", "post_v", "pre_n", "pre_sum", "pre_v"), pl.Float64()
    )
    empty = pl.DataFrame(schema={"unit": pl.Int64(), **schema})
    if windows.is_empty():
        return empty
    table = sa.Table(
        f"amends_units_{uuid.uuid4().hex[:12]}",
        sa.MetaData(),
        sa.Column("unit", sa.BigInteger, primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("pre_from", UTCDateTime(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        prefixes=["TEMPORARY"],
    )
    connection = uow.connection
    # Made and dropped in the caller's transaction: if anything fails, the rollback removes it with the rest.
    table.create(connection)
    for first in range(0, len(windows), _SLICE_ROWS):  # a slice at a time as Python objects
        connection.execute(table.insert(), windows.slice(first, _SLICE_ROWS).to_dicts())
    frames = [
        pl.DataFrame(part, schema={"unit": pl.Int64(), **schema}, orient="row")
        for source in outcome.sources
        for part in _grouped(connection, table, source, outcome)
    ]
    table.drop(connection)
    if not frames:
        return empty
    return pl.concat(frames).group_by("unit").agg(pl.all().sum())


def _grouped(
    connection: sa.Connection, units: sa.Table, source: Source, outcome: Outcome
) -> Iterator[list[tuple[Any, ...]]]:
    """The source's counts per unit, a slice of rows at a time."""
    u = units.c
    conditions: list[sa.ColumnElement[bool]] = []
    value: sa.ColumnElement[Any] | None = None
    table: sa.FromClause
    if source is Source.EVENTS:
        e = tables.events
        subject, at, table = e.c.subject, e.c.time, e
        if outcome.events is not None:
            conditions.append(e.c.type.in_(outcome.events))
        if outcome.value is not None:
            value = _number(connection.dialect.name, e.c.data, outcome.value)
    elif source is Source.COMPLAINTS:
        c = tables.complaints
        subject, at, table = c.c.customer_id, c.c.received_at, c
    else:
        f, r = tables.feedback, tables.feedback_requests
        subject, at = f.c.customer_id, f.c.received_at
        # Not the answers to a case's own request ("did we make it right?"): only treated cases are asked that,
        # so counting them would compare customers asked more often with customers asked less.
        table = f.outerjoin(r, r.c.id == f.c.request_id)
        conditions.append(r.c.case_id.is_(None))
        conditions.append(f.c.spam.is_(False))
        if outcome.sentiment is not None:
            conditions.append(f.c.sentiment == outcome.sentiment)
        if outcome.value is not None:
            value = sa.cast(f.c.rating, sa.Float)
    one, zero = sa.literal(1.0), sa.literal(0.0)
    columns: list[sa.ColumnElement[Any]] = []
    for window in (at > u.at, at <= u.at):  # after the incident, and before it
        columns.append(sa.func.sum(sa.case((window, one), else_=zero)))
        if value is None:
            columns += [zero, zero]
        else:
            columns.append(sa.func.sum(sa.case((window, value), else_=None)))
            columns.append(sa.func.sum(sa.case((sa.and_(window, value.is_not(None)), one), else_=zero)))
    query = (
        sa.select(u.unit, *columns)
        .select_from(units.join(table, sa.and_(subject == u.customer_id, at > u.pre_from, at <= u.until)))
        .where(*conditions)
        .group_by(u.unit)
    )
    for rows in connection.execute(query).partitions(_SLICE_ROWS):
        yield [(int(row[0]), *(float(v or 0) for v in row[1:])) for row in rows]


def _number(dialect: str, data: sa.Column[Any], path: tuple[str, ...]) -> sa.ColumnElement[Any]:
    """The number at `path` in an event's data, NULL when it is not a number (text, absent): a stray value is not
    counted, on either engine, rather than failing the report (PostgreSQL) or counting as 0 (SQLite)."""
    element = data[path]
    if dialect == "postgresql":
        return sa.case((sa.func.jsonb_typeof(element) == "number", element.as_float()), else_=None)
    kind = sa.func.json_type(data, "$." + ".".join(f'"{part}"' for part in path))
    return sa.case((kind.in_(("integer", "real")), element.as_float()), else_=None)


def _remedy_kinds(uow: UnitOfWork, units: pl.DataFrame) -> pl.DataFrame:
    """Each unit's remedy kind, for the per-kind estimates: the kind granted most often to the treated units of
    its rule and severity (the policy proposes by them), given to every unit of that stratum, held out or not, so
    that the comparison within a kind stays between arms the draw made alike. Strata where no treated unit was
    granted anything have none."""
    ledger = tables.ledger
    d = tables.holdout_draws
    granted = uow.execute(
        sa.select(d.c.incident_id, sa.func.min(ledger.c.kind).label("kind"))
        .join(ledger, ledger.c.case_id == d.c.case_id)
        .where(d.c.held_out.is_(False), ledger.c.reverses_id.is_(None))
        .group_by(d.c.incident_id)
    ).all()
    kinds = pl.DataFrame([tuple(row) for row in granted], schema={"unit": pl.Int64, "kind": pl.String}, orient="row")
    strata = (
        units.select("unit", "rule_id", "severity")
        .join(kinds, on="unit", how="inner")
        .group_by("rule_id", "severity", "kind")
        .len()
        .sort(["rule_id", "severity", "len", "kind"], descending=[False, False, True, False])
        .unique(subset=["rule_id", "severity"], keep="first", maintain_order=True)
        .select("rule_id", "severity", pl.col("kind").alias("remedy_kind"))
    )
    return (
        units.select("unit", "rule_id", "severity")
        .join(strata, on=["rule_id", "severity"], how="left")
        .select("unit", "remedy_kind")
    )


def _incremental_spend(units: pl.DataFrame) -> float:
    """Remedies granted per treated unit beyond those granted per held-out unit (held-out customers who raise it
    get remedies too), times the treated units: what proactive recovery added to the remedy bill."""
    cash = units.with_columns(pl.col("cash").fill_null(0.0))
    treated = cash.filter(~pl.col("held_out"))["cash"]
    held = cash.filter(pl.col("held_out"))["cash"]
    held_mean = float(held.mean()) if len(held) else 0.0  # type: ignore[arg-type]
    return float(treated.sum()) - held_mean * len(treated)


def _remedy_spend(uow: UnitOfWork, units: pl.DataFrame) -> pl.DataFrame:
    """The cash value granted on each unit's case, net of reversals (which are entries of their own)."""
    ledger = tables.ledger
    d = tables.holdout_draws
    rows = uow.execute(
        sa.select(d.c.incident_id, sa.func.sum(ledger.c.cash_value).label("cash"))
        .join(ledger, ledger.c.case_id == d.c.case_id)
        .group_by(d.c.incident_id)
    ).all()
    cash = [(row.incident_id, float(row.cash or 0)) for row in rows]
    frame = pl.DataFrame(cash, schema={"unit": pl.Int64, "cash": pl.Float64}, orient="row")
    return units.select("unit").join(frame, on="unit", how="left").with_columns(pl.col("cash").fill_null(0.0))
