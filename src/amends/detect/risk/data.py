"""What the risk model reads of the database: amends' own records of its customers as frames, the moments to
score, and the data fields each event type has (to check a spec against).

An incident is known from when it was detected; one found in a replay of history (`amends backfill`, the batch
evaluator) from when it happened, as a live detector would have found it then. A risk rule's incidents are left
out: they are the model's own forecasts, not failures, and counting them would feed its scores back into itself.
A remedy counts from when it was granted (grants only; a reversal does not unsay that one was given), feedback
from when it was received (spam left out), a complaint from when it was received.
"""

# ruff: noqa: S608  (the one SQL text here is this module's own; the types travel as bound parameters)

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

import duckdb
import orjson
import polars as pl
import sqlalchemy as sa

from amends.detect.batch import FRAME_SCHEMA
from amends.detect.risk.features import FEEDBACK_SCHEMA, PAIR_SCHEMA, Records
from amends.events.ledger import dedup_key
from amends.store import UnitOfWork, tables

__all__ = ["customer_chunks", "customer_history", "load_records", "moment_pairs", "naive_utc", "seen_fields"]

_IN_CHUNK = 500  # customers per query: well under any database's limit of bound parameters


def customer_chunks(customers: Sequence[str]) -> list[Sequence[str]]:
    """Customers in groups small enough for one query's `IN (...)`."""
    return [customers[start : start + _IN_CHUNK] for start in range(0, len(customers), _IN_CHUNK)]


def naive_utc(value: datetime) -> datetime:
    """An instant as the frames hold it: UTC without a zone."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def load_records(uow: UnitOfWork, *, until: datetime | None = None, customers: Sequence[str] | None = None) -> Records:
    """Incidents, remedies, feedback and complaints known before `until` (all without), of every customer or of
    those named."""
    if customers is not None and len(customers) > _IN_CHUNK:
        parts = [load_records(uow, until=until, customers=chunk) for chunk in customer_chunks(customers)]
        return Records(*(pl.concat([getattr(p, name) for p in parts]) for name in Records.__dataclass_fields__))
    i, ledger, f, c = tables.incidents, tables.ledger, tables.feedback, tables.complaints

    def before(column: sa.ColumnElement[datetime], who: sa.ColumnElement[str | None]) -> list[sa.ColumnElement[bool]]:
        tests = [] if until is None else [column < until]
        return tests if customers is None else [*tests, who.in_(customers)]

    known = sa.case((i.c.detected_by == "stream", i.c.detected_at), else_=i.c.failure_at)
    incidents = [(r.customer_id, r.rule_id, naive_utc(r.known_at)) for r in uow.execute(
        sa.select(i.c.customer_id, i.c.rule_id, known.label("known_at"))
        .where(i.c.detected_by != "risk", *before(known, i.c.customer_id)))]  # fmt: skip
    remedies = [(r.customer_id, naive_utc(r.at), float(r.cash_value or 0)) for r in uow.execute(
        sa.select(ledger.c.customer_id, ledger.c.at, ledger.c.cash_value)
        .where(ledger.c.reverses_id.is_(None), *before(ledger.c.at, ledger.c.customer_id)))]  # fmt: skip
    # A low rating on its own scale, as feedback.records.is_low_rating says: CSAT 1-2, NPS 0-6, effort 4-5.
    low = sa.case(
        (f.c.scale == "csat", f.c.rating <= 2), (f.c.scale == "nps", f.c.rating <= 6),
        (f.c.scale == "effort", f.c.rating >= 4), else_=sa.false(),
    )  # fmt: skip
    feedback = [
        (r.customer_id, naive_utc(r.received_at), r.sentiment, None if r.scale != "csat" else r.rating, bool(r.low))
        for r in uow.execute(
            sa.select(f.c.customer_id, f.c.received_at, f.c.sentiment, f.c.scale, f.c.rating, low.label("low")).where(
                f.c.spam.is_(False), f.c.customer_id.is_not(None), *before(f.c.received_at, f.c.customer_id)
            )
        )
    ]
    complaints = [(r.customer_id, naive_utc(r.received_at)) for r in uow.execute(
        sa.select(c.c.customer_id, c.c.received_at).where(*before(c.c.received_at, c.c.customer_id)))]  # fmt: skip
    empty = Records.empty()
    return Records(
        pl.DataFrame(incidents, schema=empty.incidents.schema, orient="row"),
        pl.DataFrame(remedies, schema=empty.remedies.schema, orient="row"),
        pl.DataFrame(feedback, schema=FEEDBACK_SCHEMA, orient="row"),
        pl.DataFrame(complaints, schema=empty.complaints.schema, orient="row"),
    )


def customer_history(uow: UnitOfWork, customers: Sequence[str], *, until: datetime) -> pl.DataFrame:
    """The stored events of these customers (their subject) before `until`, as the batch frame
    (`batch.FRAME_SCHEMA`): what the features of a few customers read, without the rest of the ledger."""
    e = tables.events
    rows: dict[str, list[object]] = {name: [] for name in FRAME_SCHEMA}
    for chunk in customer_chunks(customers):
        query = sa.select(e.c.source, e.c.event_id, e.c.type, e.c.time, e.c.subject, e.c.data).where(
            e.c.subject.in_(chunk), e.c.time < until
        )
        for row in uow.execute(query):
            rows["ord"].append(dedup_key(row.source, row.event_id))
            rows["id"].append(row.event_id)
            rows["source"].append(row.source)
            rows["type"].append(row.type)
            rows["t"].append(naive_utc(row.time))
            rows["subject"].append(row.subject)
            rows["data"].append(orjson.dumps(row.data).decode())
    return pl.DataFrame(rows, schema=FRAME_SCHEMA)


def moment_pairs(
    events: pl.DataFrame, moments: Collection[str], *, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """A (customer, moment) pair for each event of the moment types in [since, until), in time order; one per
    customer and instant."""
    rows = events.filter(pl.col("type").is_in(list(moments)))
    if since is not None:
        rows = rows.filter(pl.col("t") >= naive_utc(since))
    if until is not None:
        rows = rows.filter(pl.col("t") < naive_utc(until))
    return (
        rows.select(pl.col("subject").alias("customer_id"), pl.col("t").alias("at"))
        .unique()
        .sort("at", "customer_id")
        .cast(PAIR_SCHEMA)  # type: ignore[arg-type]
    )


def seen_fields(events: pl.DataFrame, types: Collection[str]) -> dict[str, set[str]]:
    """The top-level `data` fields that the stored events of each type have (any of them)."""
    if not types:
        return {}
    with duckdb.connect() as connection:
        connection.register("ledger", events.select("type", "data"))
        marks = ", ".join("?" for _ in types)
        rows = connection.sql(
            f"SELECT DISTINCT type, unnest(json_keys(data)) AS field FROM ledger WHERE type IN ({marks})",
            params=list(types),
        ).fetchall()
    seen: dict[str, set[str]] = {}
    for event_type, name in rows:
        seen.setdefault(str(event_type), set()).add(str(name))
    return seen
