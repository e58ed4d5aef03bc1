"""Trained risk models and the scores they gave, in the database: each model a version (its id), stored as text
and numbers; loading one rebuilds it without unpickling anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import lightgbm
import numpy as np
import polars as pl
import sqlalchemy as sa

from amends.detect.risk.model import Reason, RiskModel
from amends.detect.risk.spec import parse_spec
from amends.errors import NotFound
from amends.store import UnitOfWork, bulk_values, tables

__all__ = ["StoredScore", "customer_scores", "latest_model", "latest_score", "load_model", "save_model", "save_scores"]

_m = tables.risk_models
_SCORE_COLUMNS = ("model_id", "customer_id", "at", "score", "reasons", "scored_at", "scored_by")


@dataclass(frozen=True, slots=True)
class StoredScore:
    at: datetime
    score: float
    model: int
    reasons: tuple[Reason, ...]
    scored_at: datetime


def customer_scores(uow: UnitOfWork, customer_id: str, *, limit: int) -> list[StoredScore]:
    """The customer's scores, newest moment first, with their reasons."""
    s = tables.risk_scores
    rows = uow.execute(
        sa.select(s).where(s.c.customer_id == customer_id).order_by(s.c.at.desc(), s.c.id.desc()).limit(limit)
    ).all()
    return [
        StoredScore(
            row.at,
            float(row.score),
            int(row.model_id),
            tuple(Reason(r["feature"], r["description"], r["value"], r["usual"], r["push"]) for r in row.reasons),
            row.scored_at,
        )
        for row in rows
    ]


def latest_score(uow: UnitOfWork, customer_id: str) -> StoredScore | None:
    """The customer's score at their latest moment scored, with its reasons; None before any."""
    found = customer_scores(uow, customer_id, limit=1)
    return found[0] if found else None


def save_model(uow: UnitOfWork, model: RiskModel, *, now: datetime) -> int:
    """Store a trained model as the newest version; its id, also set on the model."""
    xs, ys = model.calibration
    version = int(
        uow.execute(
            sa.insert(_m)
            .values(
                created_at=now,
                trained_until=model.trained_until.replace(tzinfo=UTC),
                spec=model.spec.text,
                features=list(model.features),
                booster=model.booster.model_to_string(),
                calibration={"x": list(xs), "y": list(ys)},
                usual=model.usual,
                metrics=model.metrics,
            )
            .returning(_m.c.id)
        ).scalar_one()
    )
    model.version = version
    return version


def load_model(uow: UnitOfWork, version: int) -> RiskModel:
    row = uow.execute(sa.select(_m).where(_m.c.id == version)).first()
    if row is None:
        raise NotFound("risk model", str(version))
    return _model(row)


def latest_model(uow: UnitOfWork) -> RiskModel | None:
    """The newest version, or None before any was trained."""
    row = uow.execute(sa.select(_m).order_by(_m.c.id.desc()).limit(1)).first()
    return None if row is None else _model(row)


def _model(row: sa.Row[tuple[object, ...]]) -> RiskModel:
    m = row._mapping
    calibration = m["calibration"]
    return RiskModel(
        spec=parse_spec(None, str(m["spec"])),
        features=tuple(m["features"]),
        booster=lightgbm.Booster(model_str=str(m["booster"])),
        calibration=(tuple(calibration["x"]), tuple(calibration["y"])),
        usual=dict(m["usual"]),
        trained_until=m["trained_until"].astimezone(UTC).replace(tzinfo=None),
        metrics=dict(m["metrics"]),
        version=int(m["id"]),
    )


def save_scores(
    uow: UnitOfWork,
    model: RiskModel,
    pairs: pl.DataFrame,
    scores: np.ndarray,
    reasons: Sequence[Sequence[Reason]],
    *,
    now: datetime,
    by: str = "score",
) -> int:
    """Record each pair's score and reasons under the model's version, as scored `by` (`score`: `amends score`;
    `watch`: the risk watch, at a moment event); a pair scored before by this version keeps its first score. The
    number recorded anew."""
    assert model.version is not None, "save the model before its scores"
    bulk = bulk_values(uow.dialect)
    rows = [
        (
            model.version,
            customer,
            bulk.instant(at.replace(tzinfo=UTC)),
            float(score),
            bulk.document([{"feature": r.feature, "description": r.description, "value": r.value, "usual": r.usual,
                            "push": r.push} for r in why]),
            bulk.instant(now),
            by,
        )
        for (customer, at), score, why in zip(pairs.select("customer_id", "at").iter_rows(), scores, reasons,
                                              strict=True)
    ]  # fmt: skip
    return uow.insert_missing("risk_scores", _SCORE_COLUMNS, rows)
