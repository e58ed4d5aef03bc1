"""Training and scoring over the stored history: what `amends train` and `amends score` run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from amends.config import Settings
from amends.detect.history import read_history
from amends.detect.risk.data import load_records, moment_pairs, naive_utc, seen_fields
from amends.detect.risk.features import PAIR_SCHEMA, feature_frame
from amends.detect.risk.model import Reason, RiskModel, labelled_moments, train
from amends.detect.risk.registry import latest_model, save_model, save_scores
from amends.detect.risk.spec import FeatureSpec, FeatureSpecError, check_spec, load_spec, shipped_spec
from amends.detect.service import known_event_types
from amends.errors import InvalidInput, NotFound
from amends.store import Database

__all__ = ["Scored", "score_customers", "spec_from_settings", "train_model"]

_ACTIVE = timedelta(days=365)  # customers scored in bulk: those with an event in the year before the moment


def spec_from_settings(settings: Settings) -> FeatureSpec:
    """The spec the settings name: their file, else the shipped one for the rule packs in use."""
    if settings.risk_spec_file is not None:
        return load_spec(settings.risk_spec_file)
    return shipped_spec(settings.rule_packs)


def train_model(
    db: Database, settings: Settings, *, spec: FeatureSpec, now: datetime, until: datetime | None = None
) -> RiskModel:
    """Check the spec against the stored history, learn from the moments up to `until` (default `now`) whose labels
    are known by then, and store the model as the newest version."""
    end = until or now
    events = read_history(db, until=end)
    _check(spec, events, settings)
    with db.unit_of_work() as uow:
        records = load_records(uow, until=end)
    pairs = moment_pairs(events, spec.moments)
    frame = labelled_moments(events, pairs, spec, records, as_of=naive_utc(end))
    model = train(frame, spec)
    with db.unit_of_work(writes=True) as uow:
        save_model(uow, model, now=now)
        uow.commit()
    return model


@dataclass(frozen=True, slots=True)
class Scored:
    model: RiskModel
    at: datetime
    frame: pl.DataFrame  # customer_id, at, score, and the features
    reasons: list[list[Reason]]
    recorded: int


def score_customers(
    db: Database, settings: Settings, *, now: datetime, at: datetime | None = None, customers: list[str] | None = None
) -> Scored:
    """Score every customer with an event in the year before `at` (default `now`), or those named, at that moment,
    with the newest model; record the scores and reasons. Refuses when the model's features no longer match the
    data (an event type or a field they read is gone), naming them."""
    moment = at or now
    with db.unit_of_work() as uow:
        model = latest_model(uow)
        if model is None:
            raise NotFound("risk model", "none yet: run amends train first")
        records = load_records(uow, until=moment + timedelta(microseconds=1))
    events = read_history(db, until=moment + timedelta(microseconds=1))
    recent = events.filter(pl.col("t") > naive_utc(moment - _ACTIVE))
    try:  # against the year's data alone: a type the features read that stopped coming is a broken feed
        _check(model.spec, recent, None, features_only=True)
    except FeatureSpecError as exc:
        raise InvalidInput(
            "features", f"the model (version {model.version}) no longer matches the data: {exc}"
        ) from None
    who = customers if customers is not None else recent["subject"].unique().sort().to_list()
    pairs = pl.DataFrame({"customer_id": who, "at": [naive_utc(moment)] * len(who)}, schema=PAIR_SCHEMA)
    frame = feature_frame(events, pairs, model.spec, records)
    scores = model.score(frame) if len(frame) else np.zeros(0)
    reasons = model.reasons(frame) if len(frame) else []
    with db.unit_of_work(writes=True) as uow:
        recorded = save_scores(uow, model, frame, scores, reasons, now=now)
        uow.commit()
    scored = frame.with_columns(pl.Series("score", scores, dtype=pl.Float64))
    return Scored(model, moment.astimezone(UTC), scored, reasons, recorded)


def _check(spec: FeatureSpec, events: pl.DataFrame, settings: Settings | None, *, features_only: bool = False) -> None:
    """The spec against the events: every type it names stored (or, given settings, named by the rules and
    settings: amends knows of them before the first arrives), every field it reads present in them."""
    stored = set(events["type"].unique().to_list())
    named = known_event_types(settings) if settings is not None else set()
    fields = seen_fields(events, sorted(spec.event_types() & stored))
    check_spec(spec, known=stored | named, fields=fields, features_only=features_only)
