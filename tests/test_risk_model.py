"""The risk model: trained on a sample world by time, calibrated, evaluated, with reasons (detect/risk/model.py)."""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl
import pytest

from amends.detect.batch import envelopes_frame
from amends.detect.risk import Records, shipped_spec
from amends.detect.risk.data import moment_pairs
from amends.detect.risk.model import MIN_POSITIVES, evaluate, labelled_moments, train
from amends.errors import InvalidInput
from amends.world import generate_world


def world_frame(business: str, customers: int, days: int, seed: int = 3) -> pl.DataFrame:
    return envelopes_frame(generate_world(business, customers=customers, days=days, seed=seed))


@cache
def shop_moments() -> pl.DataFrame:
    events = world_frame("shop", 2_000, 150)
    spec = shipped_spec(("shop",))
    return labelled_moments(events, moment_pairs(events, spec.moments), spec, Records.empty(), as_of=events["t"].max())


def test_a_model_trained_on_the_past_ranks_the_later_moments_and_says_why() -> None:
    spec = shipped_spec(("shop",))
    frame = shop_moments()
    model = train(frame, spec)
    test = model.metrics["test"]
    assert test["positives"], test
    assert test["roc_auc"] is not None
    assert test["roc_auc"] > 0.65  # far from a coin; bench/anticipation.py measures it against its baseline
    assert model.trained_until < frame["at"].max()  # the latest moments were kept out of training
    later = frame.filter(pl.col("at") > model.trained_until)
    scores = model.score(later)
    assert ((scores >= 0) & (scores <= 1)).all()
    # Calibrated: over the later moments the mean score is near the share that came true.
    assert abs(float(scores.mean()) - float(later["label"].mean())) < 0.03  # type: ignore[arg-type]
    riskiest = later[int(np.argmax(scores))]
    reasons = model.reasons(riskiest)[0]
    assert reasons
    assert all(reason.push > 0 for reason in reasons)
    assert {reason.feature for reason in reasons} <= {f.id for f in spec.features}
    assert all(reason.description == spec.get(reason.feature).description for reason in reasons)  # type: ignore[union-attr]
    assert ": " in str(reasons[0])
    again = train(frame, spec)
    assert np.array_equal(again.score(later), scores)  # the same history gives the same model
    # The calibration's flat steps keep the trees' order: scores rank as the raw scores do, and move no
    # probability by more than a millionth.
    raw = model.raw(later)
    assert len(np.unique(scores)) == len(np.unique(raw))
    assert (np.diff(scores[np.argsort(raw, kind="stable")]) >= 0).all()
    xs, ys = model.calibration
    assert np.abs(scores - np.interp(raw, xs, ys)).max() <= 1e-6


def test_training_with_too_few_positive_labels_says_how_many_there_are_and_are_needed() -> None:
    spec = shipped_spec(("shop",))
    frame = shop_moments()
    rare = frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 400 == 0).then(pl.col("label")).otherwise(False).alias("label")
    )
    with pytest.raises(InvalidInput) as refused:
        train(rare, spec)
    assert refused.value.field == "label"
    assert f"at least {MIN_POSITIVES} are needed" in refused.value.reason
    positives = int(rare.filter(pl.col("at") < rare["at"][int(len(rare) * 0.7)])["label"].sum())
    assert refused.value.reason.startswith(f"{positives} positive labels")
    with pytest.raises(InvalidInput, match="nothing to learn"):
        train(frame.clear(), spec)


def test_scoring_data_without_a_feature_the_model_knows_refuses_and_names_it() -> None:
    spec = shipped_spec(("shop",))
    model = train(shop_moments(), spec)
    with pytest.raises(InvalidInput) as refused:
        model.score(shop_moments().drop("returns_90d", "spend_365d"))
    assert refused.value.field == "features"
    assert "spend_365d, returns_90d" in refused.value.reason  # in the spec's order


def test_the_evaluation_counts_what_it_says() -> None:
    labels = np.array([True, False, True, False, False, False, False, False, False, True])
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.05, 0.0, 0.15, 0.25])
    e = evaluate(labels, scores, top=0.2)
    assert (e.rows, e.positives) == (10, 3)
    assert e.precision_top == 0.5  # the top two: one of them came true
    assert e.recall_top == pytest.approx(1 / 3)
    assert e.roc_auc == pytest.approx(18 / 21)  # of 21 (positive, negative) pairs, 18 ranked right
    assert evaluate(np.array([], dtype=bool), np.array([])).roc_auc is None
