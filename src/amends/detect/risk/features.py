"""Point-in-time features and labels for (customer, moment) pairs, computed in DuckDB over the stored history.

A feature of a pair reads only what happened at or before its moment: events by their event time (the time the
thing happened, which is what a replay of history knows, whatever day the file was loaded), incidents by when
they were detected, remedies by when they were granted, feedback by when it was received. The label reads only
what came after: within the label's window, from the moment (excluded) on. A pair whose window has not closed by
the end of the history (`as_of`) has no label yet.

Every pair is computed in one pass per feature: a join of the pairs with the customer's rows of the kind the
feature reads, bounded by the moment (and the window), grouped by pair. Missing values stay missing (null):
a customer with no purchase has no `days since last purchase`, and the model learns what that means.
"""

# The SQL is this module's own text; field paths are checked against a strict pattern (conditions.parse_path)
# and windows are whole seconds computed here; every value from a spec file travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from amends.detect.batch import condition_sql
from amends.detect.risk.spec import Aggregate, Feature, FeatureKind, FeatureSpec, Label

__all__ = ["PAIR_SCHEMA", "Records", "feature_frame", "label_frame"]

PAIR_SCHEMA = {"customer_id": pl.String(), "at": pl.Datetime("us")}  # naive UTC, as the events frame's `t`
FEEDBACK_SCHEMA = {
    "customer_id": pl.String(), "at": pl.Datetime("us"), "sentiment": pl.String(), "rating": pl.Float64(),
    "low": pl.Boolean(),
}  # fmt: skip
_DAY, _HOUR = 86_400.0, 3_600.0


@dataclass(frozen=True, slots=True)
class Records:
    """What amends itself recorded of its customers, as frames (naive UTC times), for the features and labels that
    read them: incidents (`customer_id`, `rule_id`, `known_at`), remedies (`customer_id`, `at`, `cash`),
    feedback (`customer_id`, `at`, `sentiment`, `rating` on the CSAT scale, `low`: a low rating on its own scale),
    complaints (`customer_id`, `at`)."""

    incidents: pl.DataFrame
    remedies: pl.DataFrame
    feedback: pl.DataFrame
    complaints: pl.DataFrame

    @classmethod
    def empty(cls) -> Records:
        return cls(
            pl.DataFrame(schema={"customer_id": pl.String, "rule_id": pl.String, "known_at": pl.Datetime("us")}),
            pl.DataFrame(schema={"customer_id": pl.String, "at": pl.Datetime("us"), "cash": pl.Float64}),
            pl.DataFrame(schema=FEEDBACK_SCHEMA),
            pl.DataFrame(schema={"customer_id": pl.String, "at": pl.Datetime("us")}),
        )


def feature_frame(
    events: pl.DataFrame, pairs: pl.DataFrame, spec: FeatureSpec, records: Records | None = None
) -> pl.DataFrame:
    """One row per pair, in the pairs' order: `customer_id`, `at`, then a column per feature of the spec.
    `events` is a frame of the history (detect.batch.FRAME_SCHEMA: `subject`, `type`, `t`, `data`)."""
    records = records or Records.empty()
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")  # a promised time written without an offset is UTC
        numbered = pairs.select(pl.col("customer_id"), pl.col("at")).with_row_index("pair")
        connection.register("pairs", numbered)
        connection.register("ledger", events.select("ord", "id", "source", "subject", "type", "t", "data"))
        connection.register("incidents", records.incidents)
        connection.register("remedies", records.remedies)
        connection.register("feedback", records.feedback)
        out = numbered
        for feature in spec.features:
            sql, params = _sql(feature)
            column = connection.sql(sql, params=params).pl()
            out = out.join(column.rename({"v": feature.id}), on="pair", how="left")
            if _zero_when_none(feature):
                out = out.with_columns(pl.col(feature.id).fill_null(0))
    return out.sort("pair").drop("pair")


def label_frame(
    events: pl.DataFrame, pairs: pl.DataFrame, label: Label, records: Records, *, as_of: datetime
) -> pl.DataFrame:
    """One row per pair, in order: `label` (true, false, or null while the window is still open at `as_of`)."""
    within = label.within.total_seconds()
    naive = as_of.replace(tzinfo=None) if as_of.tzinfo is not None else as_of
    with duckdb.connect() as connection:
        numbered = pairs.select("customer_id", "at").with_row_index("pair")
        connection.register("pairs", numbered)
        connection.register("ledger", events.select("subject", "type", "t", "data"))
        connection.register("feedback", records.feedback)
        connection.register("complaints", records.complaints)
        after = "x.at > p.at AND x.at <= p.at + to_seconds(?)"
        parts, parameters = [], []
        if label.events:
            marks = ", ".join("?" for _ in label.events)
            parts.append(
                f"SELECT p.pair FROM pairs p JOIN (SELECT subject AS customer_id, t AS at FROM ledger "
                f"WHERE type IN ({marks})) x ON x.customer_id = p.customer_id AND {after}"
            )
            parameters += [*label.events, within]
        if label.complaints:
            parts.append(f"SELECT p.pair FROM pairs p JOIN complaints x ON x.customer_id = p.customer_id AND {after}")
            parameters.append(within)
        if label.negative_feedback or label.low_rating:
            either = (("x.sentiment = 'negative'", label.negative_feedback), ("x.low", label.low_rating))
            wanted = [condition for condition, on in either if on]
            parts.append(
                f"SELECT p.pair FROM pairs p JOIN feedback x ON x.customer_id = p.customer_id AND {after} "
                f"AND ({' OR '.join(wanted)})"
            )
            parameters.append(within)
        if label.rated_events:
            assert label.rated_value is not None
            marks = ", ".join("?" for _ in label.rated_events)
            rating = _number(label.rated_value.text)
            parts.append(
                f"SELECT p.pair FROM pairs p JOIN (SELECT subject AS customer_id, t AS at, {rating} AS rating "
                f"FROM ledger WHERE type IN ({marks})) x ON x.customer_id = p.customer_id AND {after} "
                "AND x.rating <= ?"
            )
            parameters += [*label.rated_events, within, label.rated_at_most]
        hits = connection.sql(" UNION ".join(parts), params=parameters).pl()
    seen = numbered.join(hits.unique().with_columns(pl.lit(True).alias("hit")), on="pair", how="left")
    happened = pl.col("hit").fill_null(False)
    value = happened if label.kind == "happened" else ~happened
    closed = pl.col("at") + pl.duration(seconds=within) <= naive
    return seen.sort("pair").select(pl.when(closed).then(value).otherwise(None).alias("label"))


# --- one feature's SQL: a column `v` per pair that has rows ----------------------------------------------------


def _zero_when_none(feature: Feature) -> bool:
    kind = feature.kind
    if kind in (FeatureKind.COUNT, FeatureKind.SUM, FeatureKind.INCIDENTS, FeatureKind.REMEDIES, FeatureKind.FEEDBACK):
        return True
    return kind.pairs_steps and feature.aggregate is Aggregate.COUNT


def _window(feature: Feature, column: str) -> str:
    if feature.window is None:
        return ""
    return f" AND {column} > p.at - to_seconds({int(feature.window.total_seconds())})"


def _types(types: tuple[str, ...] | None) -> str:
    return "" if types is None else f" AND type IN ({', '.join('?' for _ in types)})"


def _number(path_text: str) -> str:
    """A number at a data path, or NULL: JSON numbers, numeric strings ("12.50"), and true and false as 1 and 0."""
    text = f"json_extract_string(data, '{_json_path(path_text)}')"
    return f"(CASE {text} WHEN 'true' THEN 1.0 WHEN 'false' THEN 0.0 ELSE TRY_CAST({text} AS DOUBLE) END)"


def _json_path(path_text: str) -> str:
    steps = path_text.split(".")[1:]
    return "$" + "".join(f"[{s}]" if s.isdigit() else f'."{s}"' for s in steps)


def _sql(feature: Feature) -> tuple[str, list[Any]]:
    """The feature's SQL and its parameters, in order."""
    kind = feature.kind
    params: list[Any] = list(_parameters(feature))
    if kind.reads_events:
        value = "NULL" if feature.value is None else _number(feature.value.text) if kind is not FeatureKind.UNTIL else (
            f"timezone('UTC', TRY_CAST(json_extract_string(data, '{_json_path(feature.value.text)}') AS TIMESTAMPTZ))"
        )  # fmt: skip
        condition = "" if feature.where is None else f" AND ({condition_sql(feature.where, params)}) IS TRUE"
        rows = f"SELECT ord, subject, t, {value} AS x FROM ledger WHERE true{_types(feature.events)}{condition}"
        aggregate = {
            FeatureKind.COUNT: "count(*)",
            FeatureKind.SINCE_LAST: f"(epoch(p.at) - epoch(max(e.t))) / {_DAY}",
            FeatureKind.SINCE_FIRST: f"(epoch(p.at) - epoch(min(e.t))) / {_DAY}",
            FeatureKind.SUM: "coalesce(sum(e.x), 0)",
            FeatureKind.MEAN: "avg(e.x)",
            FeatureKind.MAX: "max(e.x)",
            FeatureKind.MIN: "min(e.x)",
            FeatureKind.LAST: "last(e.x ORDER BY e.t, e.ord) FILTER (WHERE e.x IS NOT NULL)",  # ties: ledger order
            # Hours to the nearest time still ahead that an event so far named (a flight booked, a job promised).
            FeatureKind.UNTIL: f"(epoch(min(e.x) FILTER (WHERE e.x > p.at)) - epoch(p.at)) / {_HOUR}",
        }[kind]
        sql = (
            f"SELECT p.pair, {aggregate} AS v FROM pairs p JOIN ({rows}) e ON e.subject = p.customer_id "
            f"AND e.t <= p.at{_window(feature, 'e.t')} GROUP BY p.pair, p.at"
        )
        return sql, params
    if kind.pairs_steps:
        return _steps_sql(feature), params
    if kind is FeatureKind.INCIDENTS:
        rules = "" if not feature.rules else f" AND r.rule_id IN ({', '.join('?' for _ in feature.rules)})"
        sql = (
            f"SELECT p.pair, count(*) AS v FROM pairs p JOIN incidents r ON r.customer_id = p.customer_id "
            f"AND r.known_at <= p.at{_window(feature, 'r.known_at')}{rules} GROUP BY p.pair"
        )
        return sql, params
    if kind is FeatureKind.REMEDIES:
        aggregate = "sum(r.cash)" if feature.cash else "count(*)"
        sql = (
            f"SELECT p.pair, {aggregate} AS v FROM pairs p JOIN remedies r ON r.customer_id = p.customer_id "
            f"AND r.at <= p.at{_window(feature, 'r.at')} GROUP BY p.pair"
        )
        return sql, params
    sentiment = " AND r.sentiment = ?" if feature.sentiment else ""
    aggregate = "avg(r.rating)" if kind is FeatureKind.RATING else "count(*)"
    sql = (
        f"SELECT p.pair, {aggregate} AS v FROM pairs p JOIN feedback r ON r.customer_id = p.customer_id "
        f"AND r.at <= p.at{_window(feature, 'r.at')}{sentiment} GROUP BY p.pair"
    )
    return sql, params


def _steps_sql(feature: Feature) -> str:
    assert feature.key is not None
    key = f"json_extract_string(data, '{_json_path(feature.key.text)}')"
    promise = (
        f"TRY_CAST(json_extract_string(data, '{_json_path(feature.promise.text)}') AS TIMESTAMPTZ)"
        if feature.promise is not None
        else "NULL"
    )
    ends = ", ".join("?" for _ in feature.end)
    started = (
        f"SELECT p.pair, p.at, s.subject, s.t AS st, s.ord AS sord, s.k, s.promise FROM pairs p JOIN "
        f"(SELECT ord, subject, t, {key} AS k, timezone('UTC', {promise}) AS promise FROM ledger "
        f"WHERE type = ? AND {key} IS NOT NULL) s ON s.subject = p.customer_id AND s.t <= p.at"
        f"{_window(feature, 's.t')}"
    )
    finished = (
        f"SELECT s.pair, s.at, s.st, s.sord, s.promise, min(e.t) AS et FROM ({started}) s LEFT JOIN "
        f"(SELECT subject, t, {key} AS k FROM ledger WHERE type IN ({ends})) e ON e.subject = s.subject "
        f"AND e.k = s.k AND e.t >= s.st AND e.t <= s.at GROUP BY s.pair, s.at, s.st, s.sord, s.k, s.promise"
    )
    until = "epoch(coalesce(f.et, f.at))"
    if feature.kind is FeatureKind.DELAY:
        hours = f"CASE WHEN f.promise IS NULL THEN NULL ELSE greatest(0, {until} - epoch(f.promise)) / {_HOUR} END"
    else:
        hours = f"({until} - epoch(f.st)) / {_HOUR}"
    aggregate = {
        Aggregate.MAX: "max(h)",
        Aggregate.MEAN: "avg(h)",
        Aggregate.LAST: "last(h ORDER BY st, sord)",
        Aggregate.COUNT: "count(*) FILTER (WHERE h > 0)",
    }[feature.aggregate]
    each = f"SELECT f.pair, f.st, f.sord, {hours} AS h FROM ({finished}) f"
    return f"SELECT pair, {aggregate} AS v FROM ({each}) GROUP BY pair"


def _parameters(feature: Feature) -> list[object]:
    kind = feature.kind
    if kind.reads_events:
        return list(feature.events or ())
    if kind.pairs_steps:
        return [feature.start, *feature.end]
    if kind is FeatureKind.INCIDENTS:
        return list(feature.rules)
    if kind in (FeatureKind.FEEDBACK, FeatureKind.RATING) and feature.sentiment:
        return [feature.sentiment]
    return []
