"""The risk model through the API: its trained versions with their evaluation (in aggregate: managers, admins and
keys with `metrics:read`), and a customer's scores with the reasons behind each (`customers:read`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from amends.access import Scope
from amends.detect.risk.registry import customer_scores
from amends.detect.risk.spec import parse_spec
from amends.recover.actors import Actor
from amends.recover.roles import Role
from amends.store import UnitOfWork, tables
from amends.web.deps import DB, reading, require

router = APIRouter(tags=["risk"])
_Models = Annotated[Actor, Depends(require(Scope.METRICS_READ))]
_Customers = Annotated[Actor, Depends(require(Scope.CUSTOMERS_READ))]


class EvaluationOut(BaseModel):
    rows: int = Field(description="Labelled moments in this part of the history.")
    positives: int = Field(description="Of them, those whose label came true.")
    base_rate: float | None
    roc_auc: float | None
    pr_auc: float | None
    brier: float | None
    precision_top_10pct: float | None = Field(description="Of the top tenth by score, the share that came true.")
    recall_top_10pct: float | None = Field(description="Of those that came true, the share in the top tenth.")


class ModelOut(BaseModel):
    version: int
    created_at: datetime
    trained_until: datetime = Field(description="The last labelled moment it learned from.")
    features: list[str]
    label: str = Field(description="What it predicts, in words.")
    fit: EvaluationOut = Field(description="The earliest 70 % of the moments, which fitted the trees.")
    calibrate: EvaluationOut = Field(description="The next 15 %, which calibrated the scores.")
    test: EvaluationOut = Field(description="The latest 15 %, which neither saw: the evaluation to trust.")


class ModelsOut(BaseModel):
    models: list[ModelOut] = Field(description="Newest first; the newest scores.")


class ReasonOut(BaseModel):
    feature: str
    description: str
    value: float | None
    usual: float | None = Field(description="The feature's median in training.")
    push: float = Field(description="How far it moved the score up, in log-odds (its SHAP value).")


class ScoreOut(BaseModel):
    at: datetime = Field(description="The moment scored.")
    score: float = Field(description="The calibrated probability that the label comes true.")
    model: int = Field(description="The model version that gave it.")
    reasons: list[ReasonOut] = Field(description="The features that pushed it up most, strongest first.")
    scored_at: datetime


class CustomerRiskOut(BaseModel):
    customer_id: str
    scores: list[ScoreOut] = Field(description="Newest moment first.")


@router.get("/v1/risk/models", response_model=ModelsOut)
async def read_models(db: DB, actor: _Models, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> ModelsOut:
    """The trained versions of the risk model, newest first, each with its evaluation (docs/anticipation.md)."""
    if actor.staff is not None:
        actor.at_least(Role.MANAGER, "reading the risk model's evaluation")

    def run(uow: UnitOfWork) -> ModelsOut:
        m = tables.risk_models
        rows = uow.execute(
            sa.select(m.c.id, m.c.created_at, m.c.trained_until, m.c.features, m.c.metrics, m.c.spec)
            .order_by(m.c.id.desc())
            .limit(limit)
        ).all()
        return ModelsOut(models=[_model(row) for row in rows])

    return await reading(db, run)


@router.get("/v1/customers/{customer_id}/risk", response_model=CustomerRiskOut)
async def read_customer_risk(
    customer_id: Annotated[str, Path(min_length=1, max_length=200)],
    db: DB,
    _key: _Customers,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> CustomerRiskOut:
    """The customer's risk scores, newest moment first, each with the reasons behind it (an empty list before any
    was given)."""

    def run(uow: UnitOfWork) -> CustomerRiskOut:
        return CustomerRiskOut(
            customer_id=customer_id,
            scores=[
                ScoreOut(at=x.at, score=x.score, model=x.model, scored_at=x.scored_at,
                         reasons=[ReasonOut(feature=r.feature, description=r.description, value=r.value,
                                            usual=r.usual, push=r.push) for r in x.reasons])
                for x in customer_scores(uow, customer_id, limit=limit)
            ],
        )  # fmt: skip

    return await reading(db, run)


def _model(row: Any) -> ModelOut:
    label = parse_spec(None, row.spec).label
    metrics = row.metrics
    return ModelOut(
        version=row.id, created_at=row.created_at, trained_until=row.trained_until, features=list(row.features),
        label=label.description or label.kind, fit=EvaluationOut(**metrics["fit"]),
        calibrate=EvaluationOut(**metrics["calibrate"]), test=EvaluationOut(**metrics["test"]),
    )  # fmt: skip
