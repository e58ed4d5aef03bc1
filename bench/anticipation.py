"""Benchmark of the risk model (issue 10) on data where the truth is known: the sample worlds.

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

Targets: ROC-AUC at least 0.80, and at least 0.05 above the baseline, with a positive median lead time. CDNOW and
Olist (real data) are to come in this file.

    .venv/bin/python bench/anticipation.py                        # the three businesses, 6,000 customers, 240 days
    .venv/bin/python bench/anticipation.py --customers 2000 --days 150
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, timedelta

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from amends.detect.batch import envelopes_frame, evaluate_history
from amends.detect.incidents import Candidate
from amends.detect.risk import Records, shipped_spec
from amends.detect.risk.data import moment_pairs, naive_utc
from amends.detect.risk.model import evaluate, labelled_moments, train
from amends.detect.service import RuleSource
from amends.world import generate_world

TARGET_AUC, TARGET_LIFT = 0.80, 0.05
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--businesses", default="shop,airline,car_service")
    parser.add_argument("--customers", type=int, default=6_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
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
        auc, base, lead = r["auc"], r["baseline"], r["lead"]
        met = (isinstance(auc, float) and auc >= TARGET_AUC and isinstance(base, float) and auc - base >= TARGET_LIFT
               and isinstance(lead, float) and lead > 0)  # fmt: skip
        failed |= not met
        table.add_row(
            str(r["business"]), f"{r['events']:,}", f"{r['moments']:,}", f"{r['test']:,}", f"{r['positives']:,}",
            f(auc), f(r["pr_auc"]), f(r["precision"]), f(r["recall"]), f(base), f(r["baseline_precision"]),
            f(lead, 1), ("MET" if met else "NOT MET") + f": ≥ {TARGET_AUC}, ≥ baseline + {TARGET_LIFT}, lead > 0",
        )  # fmt: skip
    out.print(table)
    out.print(f"{sum(float(r['seconds']) for r in results):,.0f} s in all.")  # type: ignore[arg-type]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
