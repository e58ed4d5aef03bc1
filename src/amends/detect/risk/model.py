"""Training, evaluating and using the risk model: gradient-boosted trees (LightGBM) over the spec's features, with
calibrated probabilities and the features that pushed each score up.

The history is split by time, never at random: the earliest 70 % of the labelled moments fit the trees, the next
15 % calibrate their scores into probabilities (isotonic regression), and the last 15 %, which neither saw, is
where the model is evaluated. A customer's later moments are never used to predict their earlier ones.

The stored model is plain text and numbers (LightGBM's own model text, the calibration's breakpoints, the
spec's YAML, the metrics): nothing is unpickled, so a stored model cannot run code when it is loaded.

Reasons are exact per-score contributions (SHAP values, which LightGBM computes for its own trees): for each
score, the features whose values pushed it up most, with the value and the value usual in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import lightgbm
import numpy as np
import polars as pl
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from amends.detect.risk.features import Records, feature_frame, label_frame
from amends.detect.risk.spec import FeatureSpec
from amends.errors import InvalidInput

__all__ = ["MIN_POSITIVES", "Evaluation", "Reason", "RiskModel", "evaluate", "labelled_moments", "train"]

MIN_POSITIVES = 30  # positive labels in the part that fits the trees, at the least
_SHARES = (0.70, 0.85)  # where the fitting part ends and where the calibrating part ends, by time
_PARAMETERS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 2,
    "deterministic": True,
    "force_row_wise": True,
}
_ROUNDS = 300
_TIEBREAK = 1e-6  # the most a score moves so that the calibration's flat steps keep the trees' order


@dataclass(frozen=True, slots=True)
class Evaluation:
    """How well scores rank and estimate what came: over `rows` moments, `positives` of which had the label."""

    rows: int
    positives: int
    roc_auc: float | None
    pr_auc: float | None
    brier: float | None
    precision_top: float | None  # of the top tenth by score, the share with the label
    recall_top: float | None  # of those with the label, the share in the top tenth

    @property
    def base_rate(self) -> float | None:
        return self.positives / self.rows if self.rows else None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"rows": self.rows, "positives": self.positives, "base_rate": self.base_rate, "roc_auc": self.roc_auc,
                "pr_auc": self.pr_auc, "brier": self.brier, "precision_top_10pct": self.precision_top,
                "recall_top_10pct": self.recall_top}  # fmt: skip


def evaluate(labels: np.ndarray, scores: np.ndarray, *, top: float = 0.1) -> Evaluation:
    """ROC-AUC, PR-AUC, Brier score, and precision and recall in the top `top` share by score."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    rows, positives = len(labels), int(labels.sum())
    if rows == 0:
        return Evaluation(0, 0, None, None, None, None, None)
    both = 0 < positives < rows
    k = max(1, math.ceil(rows * top))
    chosen = np.argsort(-scores, kind="stable")[:k]
    hits = int(labels[chosen].sum())
    return Evaluation(
        rows,
        positives,
        float(roc_auc_score(labels, scores)) if both else None,
        float(average_precision_score(labels, scores)) if both else None,
        float(brier_score_loss(labels, np.clip(scores, 0, 1))),
        hits / k,
        hits / positives if positives else None,
    )


@dataclass(frozen=True, slots=True)
class Reason:
    """A feature that pushed a score up: what it is, its value, the value usual in training, and by how much (in
    log-odds) it moved the score."""

    feature: str
    description: str
    value: float | None
    usual: float | None
    push: float

    def __str__(self) -> str:
        def shown(x: float | None) -> str:
            return "none" if x is None else f"{x:,.0f}" if abs(x) >= 10 or x == int(x) else f"{x:,.1f}"

        return f"{self.description}: {shown(self.value)} (usually {shown(self.usual)})"


@dataclass
class RiskModel:
    spec: FeatureSpec
    features: tuple[str, ...]
    booster: lightgbm.Booster
    calibration: tuple[tuple[float, ...], tuple[float, ...]]  # isotonic breakpoints: raw score → probability
    usual: dict[str, float | None]  # each feature's median in training
    trained_until: datetime  # the last labelled moment the model learned from
    metrics: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    version: int | None = None

    def raw(self, frame: pl.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(_matrix(frame, self.features)), dtype=float)

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated probabilities, one per row of a feature frame."""
        xs, ys = self.calibration
        raw = self.raw(frame)
        # Isotonic calibration is a staircase: on its flat steps, scores the trees told apart would tie, and the
        # ranking would lose what the trees know. The raw score breaks those ties, moving no probability by more
        # than a millionth.
        tiebreak = _TIEBREAK / (1.0 + np.exp(-np.clip(raw, -50, 50)))
        return np.asarray((1.0 - _TIEBREAK) * np.interp(raw, xs, ys) + tiebreak, dtype=float)  # within [0, 1]

    def reasons(self, frame: pl.DataFrame, *, top: int = 3) -> list[list[Reason]]:
        """For each row, up to `top` features that pushed its score up most (none if nothing did)."""
        matrix = _matrix(frame, self.features)
        contributions = np.asarray(self.booster.predict(matrix, pred_contrib=True), dtype=float)[:, :-1]
        out: list[list[Reason]] = []
        for row, pushes in zip(matrix, contributions, strict=True):
            order = [int(i) for i in np.argsort(-pushes, kind="stable")[:top] if pushes[i] > 0]
            out.append([
                Reason(
                    self.features[i],
                    feature.description if (feature := self.spec.get(self.features[i])) else self.features[i],
                    None if math.isnan(row[i]) else float(row[i]),
                    self.usual.get(self.features[i]),
                    float(pushes[i]),
                )
                for i in order
            ])  # fmt: skip
        return out


def labelled_moments(
    events: pl.DataFrame, pairs: pl.DataFrame, spec: FeatureSpec, records: Records, *, as_of: datetime
) -> pl.DataFrame:
    """The features of each pair and its label, the pairs whose label is known by `as_of` only, in time order."""
    features = feature_frame(events, pairs, spec, records)
    labels = label_frame(events, pairs, spec.label, records, as_of=as_of)
    return pl.concat([features, labels], how="horizontal").filter(pl.col("label").is_not_null()).sort("at")


def train(frame: pl.DataFrame, spec: FeatureSpec, *, min_positives: int = MIN_POSITIVES, seed: int = 0) -> RiskModel:
    """Fit, calibrate and evaluate on a frame of `labelled_moments`, split by time."""
    if frame.is_empty():
        raise InvalidInput("label", "no moment has a known label yet: nothing to learn from")
    features = tuple(f.id for f in spec.features)
    fit, calibrate, test = _split(frame.sort("at", "customer_id"))
    positives = int(fit["label"].sum())
    if positives < min_positives:
        last: datetime = fit["at"].max()  # type: ignore[assignment]
        raise InvalidInput(
            "label",
            f"{positives} positive labels in the training part ({len(fit):,} moments up to "
            f"{last:%Y-%m-%d}); at least {min_positives} are needed. Load more history, or choose a "
            "label that happens more often",
        )
    _check_parts(calibrate, test)
    booster = _fit(fit, features, seed)
    model = RiskModel(spec, features, booster, ((0.0, 1.0), (0.0, 1.0)), {}, fit["at"].max())  # type: ignore[arg-type]
    raw = model.raw(calibrate)
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, calibrate["label"].to_numpy())
    model.calibration = (tuple(map(float, isotonic.X_thresholds_)), tuple(map(float, isotonic.y_thresholds_)))
    model.usual = {name: _median(fit[name]) for name in features}
    model.trained_until = calibrate["at"].max()  # type: ignore[assignment]
    model.metrics = {
        "fit": evaluate(fit["label"].to_numpy(), model.score(fit)).as_dict(),
        "calibrate": evaluate(calibrate["label"].to_numpy(), model.score(calibrate)).as_dict(),
        "test": evaluate(test["label"].to_numpy(), model.score(test)).as_dict(),
    }
    return model


def _fit(fit: pl.DataFrame, features: tuple[str, ...], seed: int) -> lightgbm.Booster:
    """Trees on the fitting part, as many rounds as help on its own latest fifth (early stopping, by time too)."""
    parameters = {**_PARAMETERS, "seed": seed}
    cut = fit["at"][int(len(fit) * 0.8)]
    early, late = fit.filter(pl.col("at") < cut), fit.filter(pl.col("at") >= cut)
    rounds = _ROUNDS
    if late["label"].n_unique() == 2 and early["label"].sum() >= 1:
        train_set = lightgbm.Dataset(_matrix(early, features), label=early["label"].to_numpy(),
                                     feature_name=list(features))  # fmt: skip
        valid_set = lightgbm.Dataset(_matrix(late, features), label=late["label"].to_numpy(), reference=train_set)
        probe = lightgbm.train(
            {**parameters, "metric": "binary_logloss"}, train_set, num_boost_round=_ROUNDS, valid_sets=[valid_set],
            callbacks=[lightgbm.early_stopping(30, verbose=False)],
        )  # fmt: skip
        rounds = max(10, probe.best_iteration or _ROUNDS)
    data = lightgbm.Dataset(_matrix(fit, features), label=fit["label"].to_numpy(), feature_name=list(features))
    return lightgbm.train(parameters, data, num_boost_round=rounds)


def _split(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """By time: the moments of one instant stay together."""
    times = frame["at"]
    first, second = (times[min(len(frame) - 1, int(len(frame) * share))] for share in _SHARES)
    fit = frame.filter(pl.col("at") < first)
    calibrate = frame.filter((pl.col("at") >= first) & (pl.col("at") < second))
    test = frame.filter(pl.col("at") >= second)
    if fit.is_empty():
        raise InvalidInput("label", f"{len(frame)} labelled moments are too few to split by time: load more history")
    return fit, calibrate, test


def _check_parts(calibrate: pl.DataFrame, test: pl.DataFrame) -> None:
    for name, part in (("calibrating", calibrate), ("testing", test)):
        if part.is_empty() or part["label"].n_unique() < 2:
            raise InvalidInput(
                "label", f"the {name} part of the history has too few moments of each label: load more history"
            )


def _matrix(frame: pl.DataFrame, features: tuple[str, ...]) -> np.ndarray:
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise InvalidInput("features", f"the data has no {', '.join(missing)}: the spec changed since training")
    return frame.select([pl.col(name).cast(pl.Float64) for name in features]).to_numpy()


def _median(column: pl.Series) -> float | None:
    value = column.cast(pl.Float64).median()
    return None if value is None else float(value)  # type: ignore[arg-type]
