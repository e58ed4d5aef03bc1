"""The risk model's feature spec and its point-in-time features and labels (detect/risk)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amends.detect.batch import FRAME_SCHEMA
from amends.detect.risk import (
    FeatureSpecError,
    Records,
    check_spec,
    feature_frame,
    label_frame,
    parse_spec,
    shipped_spec,
)

T0 = datetime(2026, 3, 1)  # naive UTC, as the frames hold it


def events(*rows: tuple[str, str, datetime, dict[str, Any]]) -> pl.DataFrame:
    """(subject, type, time, data) rows as a history frame."""
    return pl.DataFrame(
        {
            "ord": [f"e{n}" for n in range(len(rows))],
            "id": [f"e{n}" for n in range(len(rows))],
            "source": ["test"] * len(rows),
            "type": [r[1] for r in rows],
            "t": [r[2] for r in rows],
            "subject": [r[0] for r in rows],
            "data": [orjson.dumps(r[3]).decode() for r in rows],
        },
        schema=FRAME_SCHEMA,
    )


def pairs(*rows: tuple[str, datetime]) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": [r[0] for r in rows], "at": [r[1] for r in rows]},
                        schema={"customer_id": pl.String, "at": pl.Datetime("us")})  # fmt: skip


SPEC = """
features:
  - {id: orders_30d, kind: count, events: [order.placed], window: 30d, description: Orders in the last 30 days}
  - id: small_orders
    kind: count
    events: [order.placed]
    where: {all: [{data.total: {lt: 50}}, {source: test}]}
    description: Orders under 50
  - {id: events_all, kind: count, events: any, description: Events so far}
  - {id: since_order, kind: since_last, events: [order.placed], description: Days since the last order}
  - {id: tenure, kind: since_first, events: any, description: Days since the first event}
  - {id: spend_30d, kind: sum, events: [order.placed], value: data.total, window: 30d, description: Spend}
  - {id: last_total, kind: last, events: [order.placed], value: data.total, description: The last order's total}
  - {id: max_total, kind: max, events: [order.placed], value: data.total, description: The largest order}
  - {id: to_promise, kind: until, events: [order.placed], value: data.promised_by, description: Hours to a promise}
  - id: late_hours
    kind: delay
    start: order.placed
    promise: data.promised_by
    end: [order.delivered]
    key: data.order_id
    description: Hours the latest order came after its promise
  - id: late_orders
    kind: delay
    start: order.placed
    promise: data.promised_by
    end: [order.delivered]
    key: data.order_id
    aggregate: count
    description: Orders late or still missing past their promise
  - id: hours_to_deliver
    kind: duration
    start: order.placed
    end: [order.delivered]
    key: data.order_id
    aggregate: last
    description: Hours the last order took, or has taken so far
  - {id: incidents_30d, kind: incidents, window: 30d, description: Failures found in 30 days}
  - {id: remedies_cash, kind: remedies, value: cash, description: Cash value of remedies granted}
  - {id: negative, kind: feedback, sentiment: negative, description: Negative feedback so far}
  - {id: rating, kind: rating, description: Mean rating so far}
label:
  kind: happened
  within: 14d
  complaint: true
  events: [complaint.filed]
  low_rating: true
  rated: {events: [feedback.rated], value: data.rating, at_most: 2}
moments: [order.delivered]
"""


def spec() -> Any:
    return parse_spec(None, SPEC)


def history() -> tuple[pl.DataFrame, Records]:
    h = timedelta(hours=1)
    o1 = {"order_id": "O1", "total": 40, "promised_by": "2026-03-04T18:00:00Z"}
    o2 = {"order_id": "O2", "total": "60.5", "promised_by": "2026-03-12T00:00:00Z"}
    frame = events(
        ("C-1", "customer.profile", T0, {}),
        ("C-1", "order.placed", T0 + 24 * h, o1),
        ("C-1", "order.delivered", T0 + 84 * h, {"order_id": "O1"}),  # 2026-03-04T12:00: in time
        ("C-1", "order.placed", T0 + 240 * h, o2),
        ("C-1", "order.delivered", T0 + 288 * h, {"order_id": "O2"}),  # 2026-03-13T00:00: a day late
        ("C-2", "order.placed", T0, {"order_id": "O3", "total": 10, "promised_by": "2026-03-02T00:00:00Z"}),
    )  # fmt: skip
    records = Records.empty()
    records = Records(
        pl.DataFrame({"customer_id": ["C-1"], "rule_id": ["late"], "known_at": [T0 + 289 * h]},
                     schema=records.incidents.schema),
        pl.DataFrame({"customer_id": ["C-1"], "at": [T0 + 290 * h], "cash": [12.0]}, schema=records.remedies.schema),
        pl.DataFrame({"customer_id": ["C-1", "C-1"], "at": [T0 + 100 * h, T0 + 300 * h],
                      "sentiment": ["negative", "positive"], "rating": [2.0, 4.0], "low": [True, False]},
                     schema=records.feedback.schema),
        records.complaints,
    )  # fmt: skip
    return frame, records


def test_each_kind_of_feature_reads_what_happened_by_the_moment() -> None:
    frame, records = history()
    h = timedelta(hours=1)
    at = pairs(("C-1", T0 + 288 * h), ("C-1", T0 + 301 * h), ("C-2", T0 + 72 * h), ("C-9", T0))
    out = feature_frame(frame, at, spec(), records)
    assert out.columns[:2] == ["customer_id", "at"]
    first, later, open_order, stranger = out.to_dicts()
    assert first["orders_30d"] == 2
    assert first["small_orders"] == 1  # the 40; "60.5" is text to a condition, as in the rules
    assert first["events_all"] == 5
    assert first["since_order"] == pytest.approx(2.0)
    assert first["tenure"] == pytest.approx(12.0)
    assert first["spend_30d"] == pytest.approx(100.5)  # a number written as text counts too
    assert first["last_total"] == pytest.approx(60.5)
    assert first["max_total"] == pytest.approx(60.5)
    assert first["late_hours"] == pytest.approx(24.0)  # O2 came a day after its promise
    assert first["late_orders"] == 1
    assert first["hours_to_deliver"] == pytest.approx(48.0)
    assert first["to_promise"] is None  # both promises had passed by then
    assert first["incidents_30d"] == 0  # detected an hour after this moment
    assert first["remedies_cash"] == 0
    assert first["negative"] == 1
    assert first["rating"] == pytest.approx(2.0)
    assert later["incidents_30d"] == 1
    assert later["remedies_cash"] == pytest.approx(12.0)
    assert later["rating"] == pytest.approx(3.0)
    # O3 was promised for March 2nd and has not come by the 4th: 48 hours late so far, and still open.
    assert open_order["late_hours"] == pytest.approx(48.0)
    assert open_order["late_orders"] == 1
    assert open_order["hours_to_deliver"] == pytest.approx(72.0)
    assert stranger["to_promise"] is None
    assert stranger["orders_30d"] == 0
    assert stranger["events_all"] == 0
    assert stranger["since_order"] is None  # nothing to count from: missing, not zero
    assert stranger["last_total"] is None
    assert stranger["late_orders"] == 0


def test_until_reads_the_nearest_time_still_ahead_that_the_events_so_far_named() -> None:
    frame, records = history()
    h = timedelta(hours=1)
    # O2 was placed at 240 h and promised for March 12th, 00:00 (264 h): 23 hours ahead at 241 h; not yet known at
    # 239 h, when O1's promise (March 4th, 18:00) has long passed; past at 265 h.
    at = pairs(("C-1", T0 + 241 * h), ("C-1", T0 + 239 * h), ("C-1", T0 + 265 * h), ("C-1", T0 + 30 * h))
    out = feature_frame(frame, at, spec(), records)["to_promise"].to_list()
    assert out[0] == pytest.approx(23.0)
    assert out[1] is None
    assert out[2] is None
    assert out[3] == pytest.approx(72.0 + 18.0 - 30.0)  # O1's promise, 60 hours after the moment


def test_the_label_reads_the_window_after_the_moment_and_is_unknown_while_it_is_open() -> None:
    frame, records = history()
    h = timedelta(hours=1)
    frame = pl.concat([frame, events(("C-1", "feedback.rated", T0 + 300 * h, {"rating": 1}),
                                     ("C-2", "complaint.filed", T0 + 48 * h, {}))])  # fmt: skip
    at = pairs(("C-1", T0 + 288 * h), ("C-1", T0 + 300 * h), ("C-2", T0 + 24 * h), ("C-2", T0 + 48 * h),
               ("C-2", T0 + 600 * h))  # fmt: skip
    labels = label_frame(frame, at, spec().label, records, as_of=T0 + 700 * h)["label"].to_list()
    # A rating of 1 twelve hours later; the same rating at the moment itself is not "after"; a complaint a day later;
    # a moment whose 14 days end after the history: unknown.
    assert labels == [True, False, True, False, None]


def test_an_absent_label_is_true_when_nothing_of_the_types_came() -> None:
    frame, records = history()
    text = (
        SPEC.split("label:")[0] + "label: {kind: absent, within: 5d, events: [order.placed]}\nmoments: [order.placed]\n"
    )
    label = parse_spec(None, text).label
    h = timedelta(hours=1)
    at = pairs(("C-1", T0 + 120 * h), ("C-1", T0 + 240 * h))
    assert label_frame(frame, at, label, records, as_of=T0 + 1000 * h)["label"].to_list() == [False, True]


_TYPES = ("order.placed", "order.delivered", "support.contact")


@st.composite
def _histories(draw: st.DrawFn) -> tuple[pl.DataFrame, Records, pl.DataFrame]:
    n = draw(st.integers(1, 25))
    rows = []
    for i in range(n):
        customer = draw(st.sampled_from(("C-1", "C-2")))
        at = T0 + timedelta(hours=draw(st.integers(0, 24 * 60)))
        kind = draw(st.sampled_from(_TYPES))
        promised = (at + timedelta(hours=draw(st.integers(-24, 96)))).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = {"order_id": f"O{draw(st.integers(0, 4))}", "total": draw(st.integers(0, 500)), "promised_by": promised}
        rows.append((customer, kind, at, data))
        del i
    moments = [(draw(st.sampled_from(("C-1", "C-2"))), T0 + timedelta(hours=draw(st.integers(0, 24 * 60))))
               for _ in range(draw(st.integers(1, 6)))]  # fmt: skip
    known = [T0 + timedelta(hours=draw(st.integers(0, 24 * 60))) for _ in range(3)]
    base = Records.empty()
    records = Records(
        pl.DataFrame({"customer_id": ["C-1"] * 3, "rule_id": ["r"] * 3, "known_at": known},
                     schema=base.incidents.schema),
        pl.DataFrame({"customer_id": ["C-2"] * 3, "at": known, "cash": [5.0, 6.0, 7.0]}, schema=base.remedies.schema),
        pl.DataFrame({"customer_id": ["C-1"] * 3, "at": known, "sentiment": ["negative", "neutral", "negative"],
                      "rating": [1.0, 3.0, 5.0], "low": [True, False, False]}, schema=base.feedback.schema),
        base.complaints,
    )  # fmt: skip
    return events(*rows), records, pairs(*moments)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_histories())
def test_no_feature_can_see_anything_after_its_moment(case: tuple[pl.DataFrame, Records, pl.DataFrame]) -> None:
    """Each pair's features from the whole history equal those from the history cut at its moment: whatever came
    after (events, incidents detected, remedies granted, feedback received) changes nothing."""
    frame, records, at = case
    spec_ = spec()
    whole = feature_frame(frame, at, spec_, records)
    for n, (customer, moment) in enumerate(at.iter_rows()):
        cut = Records(
            records.incidents.filter(pl.col("known_at") <= moment),
            records.remedies.filter(pl.col("at") <= moment),
            records.feedback.filter(pl.col("at") <= moment),
            records.complaints,
        )
        alone = feature_frame(frame.filter(pl.col("t") <= moment), pairs((customer, moment)), spec_, cut)
        features = [column for column in whole.columns if column not in ("customer_id", "at")]
        expected = dict(zip(features, whole.select(features).row(n), strict=True))
        assert dict(zip(features, alone.select(features).row(0), strict=True)) == pytest.approx(expected), moment


def test_every_shipped_spec_loads() -> None:
    for packs in ((), ("shop",), ("airline",), ("car_service",)):
        loaded = shipped_spec(packs)
        assert loaded.features
        assert all(feature.description for feature in loaded.features)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (
            "kind: count, events: [a.b], window: 30d, description: x x x, value: data.total",
            "features[0].value",
            "not a field of a count feature",
        ),
        ("kind: sum, events: [a.b], description: Spend so far", "features[0].value", "required"),
        ("kind: sum, events: any, value: data.total, description: Spend", "features[0].events", "not any"),
        ("kind: count, events: [a.b], window: 4000d, description: Too long", "features[0].window", "ten years"),
        (
            "kind: delay, start: a.b, end: [a.c], key: order_id, promise: data.p, description: Late",
            "features[0].key",
            "data",
        ),
        ("kind: teleport, events: [a.b], description: Nothing", "features[0].kind", "count"),
        (
            "kind: count, events: [a.b], where: {data.x: {between: 1}}, description: Bad",
            "features[0].where.data.x",
            "unknown operator",
        ),
    ],
)
def test_a_bad_feature_is_refused_naming_its_field_and_line(change: str, field: str, reason: str) -> None:
    label = "label: {kind: happened, within: 14d, complaint: true}\nmoments: [a.b]\n"
    text = f"features:\n  - {{id: f1, {change}}}\n{label}"
    with pytest.raises(FeatureSpecError) as refused:
        parse_spec(Path("spec.yaml"), text)
    problem = refused.value.problems[0]
    assert problem.field.startswith(field), refused.value.problems
    assert reason in problem.reason, problem.reason
    assert problem.line == 2


def test_the_check_names_an_unknown_event_type_and_a_field_no_event_has() -> None:
    loaded = spec()
    with pytest.raises(FeatureSpecError) as refused:
        check_spec(loaded, known={"order.placed", "complaint.filed", "feedback.rated", "order.delivered"} - {
            "order.delivered"})  # fmt: skip
    assert any("order.delivered" in p.reason and p.field == "features.late_hours" for p in refused.value.problems)
    known = {"order.placed", "order.delivered", "complaint.filed", "feedback.rated"}
    with pytest.raises(FeatureSpecError) as refused:
        check_spec(
            loaded, known=known, fields={"order.placed": {"order_id", "promised_by"}, "order.delivered": {"order_id"}}
        )
    assert [p.field for p in refused.value.problems] == [
        "features.spend_30d",
        "features.last_total",
        "features.max_total",
    ]
    assert "no order.placed event has data.total" in refused.value.problems[0].reason
    check_spec(loaded, known=known, fields={"order.placed": {"order_id", "promised_by", "total"}})
    with pytest.raises(FeatureSpecError) as refused:  # the label's types too, when training
        check_spec(loaded, known={"order.placed", "order.delivered"})
    assert {p.field for p in refused.value.problems} == {"label"}
    check_spec(loaded, known={"order.placed", "order.delivered"}, features_only=True)  # scoring reads no label


# --- what the model reads of the database ----------------------------------------------------------------------


def test_records_are_read_from_the_database_as_known_at_their_time(db: Any) -> None:
    import sqlalchemy as sa

    from amends.detect.risk.data import load_records, moment_pairs, seen_fields
    from amends.store import tables

    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    with db.unit_of_work(writes=True) as uow:
        case = uow.execute(
            sa.insert(tables.cases).values(customer_id="C-1", origin="proactive", status="open", playbook="p",
                                           severity=2, fault="company", opened_at=at, reopened=0)
            .returning(tables.cases.c.id)
        ).scalar_one()  # fmt: skip
        incident = {"key": "k", "customer_id": "C-1", "severity": 2, "playbook": "p", "status": "open", "facts": {}}
        uow.execute(sa.insert(tables.incidents), [
            {**incident, "rule_id": "live", "failure_at": at, "detected_at": at + timedelta(minutes=5),
             "detected_by": "stream"},
            {**incident, "rule_id": "replayed", "key": "k2", "failure_at": at, "detected_at": at + timedelta(days=90),
             "detected_by": "backfill"},
        ])  # fmt: skip
        grant = {"case_id": case, "customer_id": "C-1", "unit": "EUR", "policy": "p", "granted_by": "ana", "at": at}
        voucher = {**grant, "slot": "s1", "kind": "voucher"}
        uow.execute(sa.insert(tables.ledger), [
            {**voucher, "entry_key": "e1", "amount": 20, "cash_value": Decimal("12.50"), "reverses_id": None},
            {**voucher, "entry_key": "e2", "amount": -20, "cash_value": Decimal("-12.50"), "reverses_id": 1},
        ])  # fmt: skip
        feedback = {
            "channel": "page",
            "customer_id": "C-1",
            "text": "x",
            "received_at": at,
            "created_at": at,
            "updated_at": at,
            "spam": False,
            "spam_score": 0.0,
            "sentiment": "negative",
            "sentiment_score": -0.5,
            "urgency": "normal",
            "reasons": {},
            "model": "m",
            "route": "inbox",
        }
        uow.execute(sa.insert(tables.feedback), [
            {**feedback, "dedup_key": "f1", "rating": 2, "scale": "csat"},
            {**feedback, "dedup_key": "f2", "rating": 6, "scale": "nps"},
            {**feedback, "dedup_key": "f3", "rating": 4, "scale": "effort", "sentiment": "neutral"},
            {**feedback, "dedup_key": "f4", "rating": 5, "scale": "csat", "spam": True},
        ])  # fmt: skip
        complaint = {"source": "s", "external_id": "c1", "customer_id": "C-1", "channel": "email", "text": "x"}
        uow.execute(sa.insert(tables.complaints).values(**complaint, received_at=at, case_id=case, created_at=at))
        uow.commit()
    with db.unit_of_work() as uow:
        records = load_records(uow)
        assert load_records(uow, until=at).incidents.is_empty()
    naive = at.replace(tzinfo=None)
    known = dict(zip(records.incidents["rule_id"], records.incidents["known_at"], strict=True))
    assert known == {"live": naive + timedelta(minutes=5), "replayed": naive}  # a replay knew it when it happened
    assert records.remedies["cash"].to_list() == [12.5]  # the grant; its reversal is not a remedy given
    assert records.feedback.sort("rating")["low"].to_list() == [True, True, True]  # CSAT 2, NPS 6, effort 4
    assert records.feedback["rating"].drop_nulls().to_list() == [2.0]  # ratings on the CSAT scale only; no spam
    assert records.complaints["customer_id"].to_list() == ["C-1"]

    frame, _ = history()
    assert seen_fields(frame, ["order.placed", "order.delivered"]) == {
        "order.placed": {"order_id", "total", "promised_by"}, "order.delivered": {"order_id"}}  # fmt: skip
    moments = moment_pairs(frame, ["order.delivered"], since=datetime(2026, 3, 5, tzinfo=UTC))
    assert moments.rows() == [("C-1", T0 + timedelta(hours=288))]
