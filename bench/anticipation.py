"""Benchmark of the risk model (issue 10): on the sample worlds, where the truth is known, and on CDNOW, real data.

For each business, a world is generated (its events are the company's history; nothing of the generator's
internals is read) and the shipped rules run over it with the batch evaluator (the incidents amends would have
found, each known from when it happened). At every moment the business's spec names (a delivery, a landing, a
finished job), the question is: will this customer complain, or rate 1 or 2, within 14 days? The moments are
split by time as `amends train` splits them: the earliest 70 % fit, the next 15 % calibrate, the latest 15 % is
the test on which everything below is measured.

- the model: `detect.risk` trained on the fit and calibration parts;
- the baseline "any rule fired": 1 if a rule found an incident for the customer in the 14 days up to the moment;
- lead time: for the test moments in the model's top tenth whose label came true, the time from the moment to
  the complaint or low rating (median).

Targets: ROC-AUC at least 0.80, and at least 0.05 above the baseline, with a positive median lead time.

CDNOW (real purchase histories: 69,659 purchases by 23,570 customers who first bought in the first quarter of 1997,
up to June 1998) is measured in `cdnow()`, and Olist (a real Brazilian shop's orders, deliveries against their promised
dates, and review scores), when its files are at ../shared/data/olist or --olist, in `olist()`; their docstrings say
how.

    .venv/bin/python bench/anticipation.py                        # the three businesses (6,000 customers), then CDNOW
    .venv/bin/python bench/anticipation.py --customers 2000 --days 150 --datasets worlds
    .venv/bin/python bench/anticipation.py --datasets cdnow       # CDNOW alone (needs lifetimes, or --cdnow PATH)
    .venv/bin/python bench/anticipation.py --datasets cdnow --validate   # and the validation the design was chosen on
    .venv/bin/python bench/anticipation.py --datasets olist --olist DIR
"""

from __future__ import annotations

import os

# LightGBM's OpenMP threads spin while they wait for each other: on a machine whose two cores something else is
# using, that made training CDNOW's stacked cuts ten times slower (115 s instead of 12). Waiting passively costs
# nothing on an idle machine. Set before anything loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib
import importlib.util
import json
import math
import statistics
import time
import warnings
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from amends.detect.batch import FRAME_SCHEMA, envelopes_frame, evaluate_history
from amends.detect.incidents import Candidate
from amends.detect.risk import PAIR_SCHEMA, FeatureSpec, Records, load_spec, parse_spec, shipped_spec
from amends.detect.risk.data import moment_pairs, naive_utc
from amends.detect.risk.model import evaluate, labelled_moments, train
from amends.detect.service import RuleSource
from amends.events.olist import olist_events
from amends.world import generate_world

TARGET_AUC, TARGET_LIFT = 0.80, 0.05
DATASETS = ("worlds", "cdnow", "olist")
out = Console(highlight=False, width=160)


def world_frame(business: str, customers: int, days: int, seed: int) -> pl.DataFrame:
    return envelopes_frame(generate_world(business, customers=customers, days=days, seed=seed))


def incidents_of(business: str, events: pl.DataFrame) -> pl.DataFrame:
    rules = RuleSource((business,), None).load()
    until = events["t"].max().replace(tzinfo=UTC) + timedelta(seconds=1)  # type: ignore[union-attr]
    found = [f for f in evaluate_history(rules, events, until=until).findings if isinstance(f, Candidate)]
    return pl.DataFrame(
        {"customer_id": [f.customer for f in found], "rule_id": [f.rule_id for f in found],
         "known_at": [naive_utc(f.failure_at) for f in found]},
        schema=Records.empty().incidents.schema,
    )  # fmt: skip


def first_outcome_after(events: pl.DataFrame, pairs: pl.DataFrame, within: timedelta) -> pl.Series:
    """Hours from each moment to the first complaint or rating of 1-2 within the window (null if none)."""
    bad = events.filter(
        (pl.col("type") == "complaint.filed")
        | ((pl.col("type") == "feedback.rated") & (pl.col("data").str.json_path_match("$.rating").cast(pl.Int64) <= 2))
    ).select(pl.col("subject").alias("customer_id"), pl.col("t").alias("when"))
    joined = (
        pairs.with_row_index("row")
        .join(bad, on="customer_id", how="left")
        .filter((pl.col("when") > pl.col("at")) & (pl.col("when") <= pl.col("at") + within))
        .group_by("row")
        .agg(((pl.col("when").min() - pl.col("at").first()).dt.total_seconds() / 3600).alias("hours"))
    )
    return pairs.with_row_index("row").join(joined, on="row", how="left").sort("row")["hours"]


def one(business: str, customers: int, days: int, seed: int) -> dict[str, object]:
    started = time.perf_counter()
    events = world_frame(business, customers, days, seed)
    incidents = incidents_of(business, events)
    empty = Records.empty()
    records = Records(incidents, empty.remedies, empty.feedback, empty.complaints)
    spec = shipped_spec((business,))
    frame = labelled_moments(events, moment_pairs(events, spec.moments), spec, records, as_of=events["t"].max())  # type: ignore[arg-type]
    model = train(frame, spec)
    test = frame.filter(pl.col("at") > model.trained_until)
    labels = test["label"].to_numpy()
    scores = model.score(test)
    window = spec.label.within
    fired = (
        test.select("customer_id", "at").with_row_index("row")
        .join(incidents, on="customer_id", how="left")
        .with_columns(((pl.col("known_at") <= pl.col("at")) & (pl.col("known_at") > pl.col("at") - window))
                      .fill_null(False).alias("hit"))
        .group_by("row").agg(pl.col("hit").any()).sort("row")["hit"].to_numpy().astype(float)
    )  # fmt: skip
    model_eval = evaluate(labels, scores)
    baseline_auc = float(roc_auc_score(labels, fired)) if 0 < labels.sum() < len(labels) else None
    top = np.argsort(-scores, kind="stable")[: max(1, len(scores) // 10)]
    hours = first_outcome_after(events, test.select("customer_id", "at"), window).to_numpy()
    leads = [float(hours[i]) for i in top if labels[i] and not np.isnan(hours[i])]
    return {
        "business": business, "events": len(events), "moments": len(frame), "test": model_eval.rows,
        "positives": model_eval.positives, "auc": model_eval.roc_auc, "pr_auc": model_eval.pr_auc,
        "precision": model_eval.precision_top, "recall": model_eval.recall_top, "baseline": baseline_auc,
        "baseline_precision": float(labels[fired == 1].mean()) if (fired == 1).any() else None,
        "lead": statistics.median(leads) if leads else None, "seconds": time.perf_counter() - started,
    }  # fmt: skip


# --- CDNOW ---------------------------------------------------------------------------------------------------------

CDNOW_SPEC = Path(__file__).with_name("cdnow.yaml")
CDNOW_SCORING = datetime(1998, 1, 1)  # the end of 1997-12-31, naive UTC as the frames hold times
CDNOW_FIRST_CUT = datetime(1997, 2, 1)  # the earliest training cut: a month into the history
RFM = ("days_since_last", "orders", "mean_amount", "days_since_first")  # recency, frequency, monetary value, age


def cdnow_file(given: Path | None) -> Path | None:
    """The CDNOW master file: the path given, else the copy inside the `lifetimes` package if it is installed."""
    if given is not None:
        return given if given.is_file() else None
    found = importlib.util.find_spec("lifetimes")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"
    return path if path.is_file() else None


def cdnow_events(path: Path) -> pl.DataFrame:
    """Each purchase as an `order.placed` event of its customer at noon UTC of its day, with `amount` (dollars)
    and `items` (CDs). The file: a header, then customer id, date (YYYYMMDD), CDs and dollars, split by spaces."""
    rows = [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]
    ids = [f"cdnow-{n}" for n in range(len(rows))]
    return pl.DataFrame(
        {
            "ord": ids, "id": ids, "source": ["cdnow"] * len(rows), "type": ["order.placed"] * len(rows),
            "t": [datetime.strptime(r[1], "%Y%m%d") + timedelta(hours=12) for r in rows],
            "subject": [r[0] for r in rows],
            "data": [json.dumps({"amount": float(r[3]), "items": int(r[2])}) for r in rows],
        },
        schema=FRAME_SCHEMA,
    )  # fmt: skip


def cut_moments(events: pl.DataFrame, spec: FeatureSpec, cuts: list[datetime]) -> pl.DataFrame:
    """The spec's features and label for every customer who had bought before each cut, through the product's
    point-in-time pipeline, ordered by cut and customer."""
    pairs = pl.concat([
        events.filter(pl.col("t") < cut).select(pl.col("subject").unique().alias("customer_id"))
        .with_columns(pl.lit(cut).alias("at")).cast(PAIR_SCHEMA)  # type: ignore[arg-type]
        for cut in cuts
    ])  # fmt: skip
    as_of = events["t"].max()
    return labelled_moments(events, pairs, spec, Records.empty(), as_of=as_of).sort("at", "customer_id")  # type: ignore[arg-type]


def logistic(train: pl.DataFrame, test: pl.DataFrame, columns: Sequence[str], *, log: bool) -> np.ndarray:
    """A logistic regression on the columns (standardised; `log`: of log(1 + x)), fitted on `train`: test's
    log-odds."""

    def matrix(frame: pl.DataFrame) -> np.ndarray:
        x = frame.select([pl.col(c).cast(pl.Float64).fill_null(0.0) for c in columns]).to_numpy()
        return np.log1p(np.clip(x, 0, None)) if log else x

    fitted = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2_000))
    fitted.fit(matrix(train), train["label"].to_numpy())
    return np.asarray(fitted.decision_function(matrix(test)), dtype=float)


def bgnbd(events: pl.DataFrame, at: datetime, customers: pl.Series, within: timedelta) -> np.ndarray | None:
    """Minus the purchases BG/NBD (lifetimes' BetaGeoFitter, fitted on the history before `at`, in days) expects of
    each customer within the window: higher is riskier. None when lifetimes is not installed."""
    day = at.date() - timedelta(days=1)  # the last day the history shows
    days = events.filter(pl.col("t") < at).select(pl.col("subject"), pl.col("t").dt.date().alias("day")).unique()
    each = (
        days.group_by("subject").agg(pl.len().alias("days"), pl.col("day").min().alias("first"),
                                     pl.col("day").max().alias("last"))
        .with_columns(frequency=pl.col("days") - 1, recency=(pl.col("last") - pl.col("first")).dt.total_days(),
                      age=(pl.lit(day) - pl.col("first")).dt.total_days())
    )  # fmt: skip
    f, r, t = (each[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "age"))
    with warnings.catch_warnings():  # the unmaintained package warns of pandas 3's deprecations at every call
        warnings.simplefilter("ignore")
        try:
            lifetimes = importlib.import_module("lifetimes")
        except ImportError:
            return None
        fitter = lifetimes.BetaGeoFitter(penalizer_coef=0.0).fit(f, r, t)
        expected = np.asarray(fitter.conditional_expected_number_of_purchases_up_to_time(within.days, f, r, t))
    scores = pl.DataFrame({"customer_id": each["subject"], "score": -expected})
    aligned = pl.DataFrame({"customer_id": customers}).join(scores, on="customer_id", how="left", maintain_order="left")
    return aligned["score"].to_numpy()


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def bootstrap_aucs(
    labels: np.ndarray, scores: dict[str, np.ndarray], *, resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """Each score's ROC-AUC on the same `resamples` draws of customers with replacement (paired), as the share of
    (positive, negative) pairs ranked right, ties a half, over the draw's counts: one sort per score, not per draw."""
    rng = np.random.default_rng(seed)
    draws = [np.bincount(rng.integers(0, len(labels), len(labels)), minlength=len(labels)) for _ in range(resamples)]
    found: dict[str, np.ndarray] = {}
    for name, s in scores.items():
        values, group = np.unique(s, return_inverse=True)
        each = np.empty(resamples)
        for n, weight in enumerate(draws):
            positive = np.bincount(group, weights=weight * labels, minlength=len(values))
            negative = np.bincount(group, weights=weight * ~labels, minlength=len(values))
            below = np.cumsum(negative) - negative
            each[n] = (positive * (below + negative / 2)).sum() / (positive.sum() * negative.sum())
        found[name] = each
    return found


def cdnow_cuts(scoring: datetime, window: timedelta) -> list[datetime]:
    """Weekly training cuts, the latest a day before `scoring` minus the window (so every window closes before the
    scoring cut), back to CDNOW_FIRST_CUT."""
    latest = scoring - window - timedelta(days=1)
    return [c for k in range(60) if (c := latest - timedelta(days=7 * k)) >= CDNOW_FIRST_CUT][::-1]


def half_of(customers: pl.Series) -> np.ndarray:
    """A fixed half (0 or 1) for each customer, from a checksum of the id."""
    return np.array([zlib.crc32(c.encode()) % 2 for c in customers.to_list()])


def cdnow(path: Path, *, resamples: int, seed: int, validate: bool) -> bool:
    """CDNOW: at the end of 1997-12-31, for every customer who had bought before, will they buy again within 180
    days? The risk the model scores is the spec's label, `absent`: no purchase within 180 days.

    Each purchase is an `order.placed` event (bench/cdnow.yaml is the spec, what a retailer knowing only purchases
    could write); features come from the product's point-in-time pipeline (`labelled_moments`), only from the
    history up to each cut. Training: weekly cuts back from the end of 1997-07-03 to early February, whose 180-day
    windows all close before the scoring cut, stacked; the product's `train` splits them by time (70 % fit, 15 %
    calibrate, 15 % its own test), and the scoring cut is scored apart, once. Every customer seen before a cut is a
    pair.

    Baselines, in the same run: a logistic regression on recency, frequency, monetary value (dollars per purchase)
    and age, standardised, fitted on the same training cuts; and lifetimes' BG/NBD fitted on the history before the
    scoring cut, scored by the purchases it expects within the 180 days (fewer: riskier), not P(alive). Also shown,
    not a product model: a logistic regression on log(1 + x) of the spec's features, the design the validation
    below preferred.

    Lead: for the risk "no purchase within 180 days" the outcome is settled when the window closes with no purchase,
    so the lead of a customer flagged (top tenth) who then did not buy is the whole window from the scoring moment
    (180 days; the median over them). Target: ROC-AUC above both baselines, with the paired bootstrap's 95 %
    interval of the difference to the better one above zero (customers of the scoring cut drawn with replacement).

    Validation (`--validate`), chosen before and apart from the scoring cut: at the ends of 1997-07-03, 06-19 and
    06-05 (their windows close by 1997-12-31), trained on cuts at least 91 days earlier (so that, as for the
    scoring cut, the customers scored are about twice as old as those trained on), on one half of the customers and
    evaluated on the other half (both ways), so no customer's own future is learned. Also a reference that is not
    a forecast: the scoring cut cross-fitted on its own labels (5 folds of customers), the most any model of these
    features could expect to gain over the RFM regression."""
    started = time.perf_counter()
    events = cdnow_events(path)
    spec = load_spec(CDNOW_SPEC)
    window = spec.label.within
    training_cuts = cdnow_cuts(CDNOW_SCORING, window)
    everything = cut_moments(events, spec, [*training_cuts, CDNOW_SCORING])
    training = everything.filter(pl.col("at") <= training_cuts[-1])
    scoring = everything.filter(pl.col("at") == CDNOW_SCORING)
    labels = scoring["label"].to_numpy().astype(bool)
    model = train(training, spec, seed=seed)
    scores: dict[str, np.ndarray | None] = {
        "amends risk model (LightGBM, product training)": model.score(scoring),
        "not a product model: logistic regression on log(1 + x) of the spec's features": logistic(
            training, scoring, [f.id for f in spec.features], log=True
        ),
        "baseline: RFM logistic regression (recency, frequency, monetary, age)": logistic(
            training, scoring, RFM, log=False
        ),
        "baseline: BG/NBD expected purchases in 180 days (lifetimes)": bgnbd(
            events, CDNOW_SCORING, scoring["customer_id"], window
        ),
    }
    names = list(scores)
    product, baselines = names[0], names[2:]
    ran = {n: s for n, s in scores.items() if s is not None}
    better = max((n for n in baselines if n in ran), key=lambda n: auc(labels, ran[n]))
    resampled = bootstrap_aucs(labels, ran, resamples=resamples, seed=seed)
    intervals = {n: tuple(np.percentile(resampled[n] - resampled[better], [2.5, 97.5])) for n in ran}
    low, high = intervals[product]
    table = Table(
        "model", "ROC-AUC", "PR-AUC", "PR-AUC (buys again)", "precision top 10%", "recall top 10%",
        "median lead (d)", f"Δ ROC-AUC vs {'RFM' if 'RFM' in better else 'BG/NBD'} [95 % CI]",
        title=f"CDNOW, at the end of 1997-12-31: which of its {len(scoring):,} customers will not buy within 180 days "
        f"({labels.mean():.1%} did not)? Trained on {len(training_cuts)} weekly cuts from "
        f"{training_cuts[0]:%Y-%m-%d} to the end of {training_cuts[-1] - timedelta(days=1):%Y-%m-%d} "
        f"({len(training):,} moments)",
    )  # fmt: skip
    for name in names:
        s = scores[name]
        if s is None:
            table.add_row(name, *["n/a"] * 6, "not run: lifetimes is not installed")
            continue
        e = evaluate(labels, s)
        top = np.argsort(-s, kind="stable")[: max(1, math.ceil(len(s) * 0.1))]
        leads = [window.total_seconds() / 86_400 for i in top if labels[i]]  # settled when the window closes
        d_low, d_high = intervals[name]
        delta = (
            "" if name == better else f"{auc(labels, s) - auc(labels, ran[better]):+.4f} [{d_low:+.4f}, {d_high:+.4f}]"
        )
        table.add_row(
            name, f"{e.roc_auc:.4f}", f"{e.pr_auc:.3f}", f"{average_precision_score(~labels, -s):.3f}",
            f"{e.precision_top:.3f}", f"{e.recall_top:.3f}", f"{statistics.median(leads):.0f}" if leads else "n/a",
            delta,
        )  # fmt: skip
    out.print(table)
    complete = all(scores[n] is not None for n in baselines)
    product_auc = auc(labels, ran[product])
    met = complete and all(product_auc > auc(labels, ran[n]) for n in baselines) and low > 0
    verdict = "MET" if met else "NOT MET" if complete else "NOT JUDGED (BG/NBD did not run)"
    out.print(
        f"CDNOW target (ROC-AUC above both baselines, 95 % interval of the difference to the better one above zero, "
        f"{resamples:,} paired resamples): {verdict}. The product model's ROC-AUC {product_auc:.4f}, "
        f"{better.split(': ')[1]} {auc(labels, ran[better]):.4f}, difference [{low:+.4f}, {high:+.4f}]."
    )
    if validate:
        cdnow_validation(events, everything, spec, training_cuts, seed=seed)
        cdnow_reference(scoring, spec, seed=seed)
    out.print(f"CDNOW: {time.perf_counter() - started:,.0f} s.")
    return met


def cdnow_validation(
    events: pl.DataFrame, everything: pl.DataFrame, spec: FeatureSpec, cuts: list[datetime], *, seed: int
) -> None:
    """The validation `cdnow` describes: validation cuts whose windows close by the scoring cut, trained on one
    half of the customers at cuts 91 days earlier and more, evaluated on the other half."""
    columns = [f.id for f in spec.features]
    validation_cuts = [cuts[-1], cuts[-3], cuts[-5]]  # the ends of 1997-07-03, 06-19, 06-05
    methods = ("amends risk model", "logistic regression, log(1 + x) of the spec's features", "RFM logistic regression",
               "BG/NBD expected purchases")  # fmt: skip
    found: dict[str, list[float]] = {m: [] for m in methods}
    headers: list[str] = []
    for cut in validation_cuts:
        moments = everything.filter(pl.col("at") == cut)
        earlier = everything.filter(pl.col("at") <= cut - timedelta(days=91))
        bg = bgnbd(events, cut, moments["customer_id"], spec.label.within)
        for half in (0, 1):
            fit = earlier.filter(pl.Series(half_of(earlier["customer_id"]) != half))
            chosen = half_of(moments["customer_id"]) == half
            scored = moments.filter(pl.Series(chosen))
            labels = scored["label"].to_numpy().astype(bool)
            headers.append(f"{cut - timedelta(days=1):%m-%d} half {half}")
            found[methods[0]].append(auc(labels, train(fit, spec, seed=seed).score(scored)))
            found[methods[1]].append(auc(labels, logistic(fit, scored, columns, log=True)))
            found[methods[2]].append(auc(labels, logistic(fit, scored, RFM, log=False)))
            found[methods[3]].append(auc(labels, bg[chosen]) if bg is not None else float("nan"))
    table = Table("ROC-AUC", *headers, "mean", "mean Δ vs RFM",
                  title="CDNOW validation (1997, before the scoring cut; trained on one half of the customers at cuts "
                  "91 days and more before, evaluated on the other half)")  # fmt: skip
    base = np.array(found[methods[2]])
    for method, values in found.items():
        v = np.array(values)
        table.add_row(method, *(f"{x:.4f}" for x in v), f"{v.mean():.4f}", f"{(v - base).mean():+.4f}")
    out.print(table)


def cdnow_reference(scoring: pl.DataFrame, spec: FeatureSpec, *, seed: int) -> None:
    """Not a forecast: the scoring cut cross-fitted on its own labels (5 folds of customers), mean AUC per fold."""
    labels = scoring["label"].to_numpy().astype(bool)
    rfm, log = [], []
    for fit_rows, score_rows in StratifiedKFold(5, shuffle=True, random_state=seed).split(labels, labels):
        fit, scored = scoring[fit_rows], scoring[score_rows]
        rfm.append(auc(labels[score_rows], logistic(fit, scored, RFM, log=False)))
        log.append(auc(labels[score_rows], logistic(fit, scored, [f.id for f in spec.features], log=True)))
    out.print(
        f"Reference, not a forecast (fitted on the scoring cut's own labels, 5 folds of customers): RFM logistic "
        f"regression {np.mean(rfm):.4f}, logistic regression on log(1 + x) of the spec's features {np.mean(log):.4f}."
    )


# --- Olist ---------------------------------------------------------------------------------------------------------

OLIST_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "olist"
OLIST_SPEC = """\
# What a shop like Olist could write for its own history (docs/anticipation.md): the order at hand, its delivery
# against the promise, and the customer's history with us.
features:
  - id: late_hours_now
    kind: delay
    start: order.placed
    promise: data.promised_by
    end: [order.delivered]
    key: data.order_id
    window: 60d
    description: Hours the latest-arriving order of the last 60 days came (or is still out) after its promised date
  - id: late_orders_60d
    kind: delay
    start: order.placed
    promise: data.promised_by
    end: [order.delivered]
    key: data.order_id
    aggregate: count
    window: 60d
    description: Orders of the last 60 days delivered after their promised date, or still out past it
  - id: days_to_deliver
    kind: duration
    start: order.placed
    end: [order.delivered]
    key: data.order_id
    window: 60d
    description: Days from the latest order to its delivery
  - id: days_to_ship
    kind: duration
    start: order.placed
    end: [order.shipped]
    key: data.order_id
    window: 60d
    description: Days from the latest order to handing it to the carrier
  - id: order_total
    kind: last
    events: [order.placed]
    value: data.total
    description: The latest order's total
  - id: order_items
    kind: last
    events: [order.placed]
    value: data.items
    description: Items in the latest order
  - id: orders_60d
    kind: count
    events: [order.placed]
    window: 60d
    description: Orders in the last 60 days
  - id: orders_365d
    kind: count
    events: [order.placed]
    window: 365d
    description: Orders in the last year
  - id: tenure_days
    kind: since_first
    events: [order.placed]
    description: Days since the customer's first order
  - id: low_ratings_given
    kind: count
    events: [feedback.rated]
    where: {data.rating: {lte: 2}}
    window: 365d
    description: Ratings of 1 or 2 the customer gave in the last year
  - id: mean_rating_given
    kind: mean
    events: [feedback.rated]
    value: data.rating
    description: The mean rating the customer gave so far
label:
  kind: happened
  within: 30d
  rated: {events: [feedback.rated], value: data.rating, at_most: 2}
  description: Rates the order 1 or 2 within 30 days
moments: [order.delivered]
"""


def olist_pairs(events: pl.DataFrame) -> pl.DataFrame:
    """One moment per order that has a promise: the earlier of its delivery and the moment its promised date passed,
    as (customer, at, late: not delivered by the promised date), one per customer and instant."""
    order = pl.col("data").str.json_path_match("$.order_id").alias("order_id")
    placed = events.filter(pl.col("type") == "order.placed").select(
        pl.col("subject").alias("customer_id"), order,
        pl.col("data").str.json_path_match("$.promised_by").str.to_datetime(time_zone="UTC")
        .dt.replace_time_zone(None).dt.cast_time_unit("us").alias("promised_by"),
    ).drop_nulls("promised_by")  # fmt: skip
    delivered = events.filter(pl.col("type") == "order.delivered").select(order, pl.col("t").alias("delivered_at"))
    passed = pl.col("promised_by") + pl.duration(seconds=1)
    on_time = pl.col("delivered_at").is_not_null() & (pl.col("delivered_at") <= pl.col("promised_by"))
    return (
        placed.join(delivered, on="order_id", how="left")
        .with_columns(at=pl.when(on_time).then(pl.col("delivered_at")).otherwise(passed), late=~on_time)
        .group_by("customer_id", "at").agg(pl.col("late").any())
        .sort("at", "customer_id")
        .select(pl.col("customer_id").cast(pl.String), pl.col("at").cast(pl.Datetime("us")), "late")
    )  # fmt: skip


def olist(folder: Path) -> bool:
    """Olist: at the moment the shop could act (the earlier of an order's delivery and its promised date passing),
    who is about to rate it 1 or 2 within 30 days? Imported as `amends import olist` reads the files; the spec above
    is what such a shop could write. The moments are split by time as `amends train` splits them (fit 70 %,
    calibrate 15 %, test on the latest 15 %). Baseline: the rule "delivered after the promised date", which at the
    moment is 1 exactly when the order was not delivered by then. Lead: for the test moments in the model's top tenth
    that were rated 1-2, the time from the moment to the rating (median)."""
    started = time.perf_counter()
    events = envelopes_frame(olist_events(folder))
    spec = parse_spec(None, OLIST_SPEC)
    pairs = olist_pairs(events)
    frame = labelled_moments(events, pairs.select("customer_id", "at"), spec, Records.empty(),
                             as_of=events["t"].max())  # type: ignore[arg-type]  # fmt: skip
    frame = frame.join(pairs, on=["customer_id", "at"], how="left", maintain_order="left")
    model = train(frame, spec)
    test = frame.filter(pl.col("at") > model.trained_until)
    labels = test["label"].to_numpy().astype(bool)
    scores = model.score(test)
    late = test["late"].to_numpy().astype(float)
    e, b = evaluate(labels, scores), evaluate(labels, late)
    top = np.argsort(-scores, kind="stable")[: max(1, len(scores) // 10)]
    hours = first_outcome_after(events, test.select("customer_id", "at"), spec.label.within).to_numpy()
    leads = [float(hours[i]) for i in top if labels[i] and not np.isnan(hours[i])]
    lead = statistics.median(leads) if leads else None
    met = e.roc_auc is not None and b.roc_auc is not None and e.roc_auc > b.roc_auc and lead is not None and lead > 0
    table = Table(
        "model", "ROC-AUC", "PR-AUC", "precision top 10%", "recall top 10%", "median lead (h)",
        title=f"Olist: at the earlier of delivery and the promised date, who rates the order 1-2 within 30 days? "
        f"{len(frame):,} moments, tested on the latest {e.rows:,} ({e.positives:,} rated 1-2)",
    )  # fmt: skip

    def f(x: float | None, digits: int = 3) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    table.add_row("amends risk model", f(e.roc_auc), f(e.pr_auc), f(e.precision_top), f(e.recall_top), f(lead, 1))
    flagged = late == 1
    table.add_row(
        "baseline: delivered after the promised date", f(b.roc_auc), f(b.pr_auc),
        f(float(labels[flagged].mean()) if flagged.any() else None),
        f(float(labels[flagged].sum() / max(1, labels.sum()))),
        "0 (it flags at the moment)",
    )  # fmt: skip
    out.print(table)
    out.print(f"Olist target (ROC-AUC above the baseline, lead > 0): {'MET' if met else 'NOT MET'}. "
              f"{time.perf_counter() - started:,.0f} s.")  # fmt: skip
    return met


def worlds(args: argparse.Namespace) -> bool:
    results = [one(b, args.customers, args.days, args.seed) for b in args.businesses.split(",")]
    table = Table(
        "world", "events", "moments", "test moments", "positives", "ROC-AUC", "PR-AUC", "precision top 10%",
        "recall top 10%", "baseline: any rule fired (ROC-AUC)", "baseline precision", "median lead (h)", "target",
        title=f"The sample worlds ({args.customers:,} customers, {args.days} days, seed {args.seed}): will the "
        "customer complain or rate 1-2 within 14 days of the moment? Measured on the latest 15 % of moments",
    )  # fmt: skip
    failed = False

    def f(x: object, digits: int = 3) -> str:
        return "n/a" if not isinstance(x, float | int) else f"{x:.{digits}f}"

    for r in results:
        model_auc, base, lead = r["auc"], r["baseline"], r["lead"]
        met = (isinstance(model_auc, float) and model_auc >= TARGET_AUC and isinstance(base, float)
               and model_auc - base >= TARGET_LIFT and isinstance(lead, float) and lead > 0)  # fmt: skip
        failed |= not met
        table.add_row(
            str(r["business"]), f"{r['events']:,}", f"{r['moments']:,}", f"{r['test']:,}", f"{r['positives']:,}",
            f(model_auc), f(r["pr_auc"]), f(r["precision"]), f(r["recall"]), f(base), f(r["baseline_precision"]),
            f(lead, 1), ("MET" if met else "NOT MET") + f": ≥ {TARGET_AUC}, ≥ baseline + {TARGET_LIFT}, lead > 0",
        )  # fmt: skip
    out.print(table)
    out.print(f"{sum(float(r['seconds']) for r in results):,.0f} s in all.")  # type: ignore[arg-type]
    return not failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"some of {', '.join(DATASETS)}, by commas")
    parser.add_argument("--businesses", default="shop,airline,car_service")
    parser.add_argument("--customers", type=int, default=6_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--cdnow", type=Path, help="CDNOW_master.txt (default: the copy in lifetimes, if installed)")
    parser.add_argument("--resamples", type=int, default=2_000, help="paired bootstrap resamples for CDNOW")
    parser.add_argument("--validate", action="store_true", help="also the CDNOW validation the design was chosen on")
    parser.add_argument("--olist", type=Path, default=OLIST_DIR, help="the Olist CSV files (default: %(default)s)")
    args = parser.parse_args(argv)
    datasets = set(args.datasets.split(","))
    if unknown := datasets - set(DATASETS):
        parser.error(f"--datasets: unknown {', '.join(sorted(unknown))}; choose from {', '.join(DATASETS)}")
    passed = True
    if "worlds" in datasets:
        passed &= worlds(args)
    if "cdnow" in datasets:
        path = cdnow_file(args.cdnow)
        if path is None:
            where = f"at {args.cdnow}" if args.cdnow else "(lifetimes is not installed)"
            out.print(  # not a failure: the data set is not bundled (lifetimes is no dependency of amends)
                f"CDNOW: skipped, no CDNOW_master.txt {where}. Install lifetimes (`.venv/bin/uv pip install "
                "--python .venv/bin/python lifetimes`; it ships the file and is needed for the BG/NBD baseline), "
                "or pass --cdnow PATH."
            )
        else:
            passed &= cdnow(path, resamples=args.resamples, seed=args.seed, validate=args.validate)
    if "olist" in datasets:
        if not (args.olist / "olist_orders_dataset.csv").is_file():
            out.print(
                f"Olist: skipped, no data set at {args.olist} (the CSV files as Olist publishes them; not bundled)."
            )
        else:
            passed &= olist(args.olist)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
