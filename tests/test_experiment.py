"""The holdout experiment's estimates, on both engines, over draws and events made with a known effect: the interval
covers it, the verdict waits for the horizon, a small experiment says so and shows what it could detect, CUPED
narrows the interval when the past predicts the future, and outcome definitions are checked."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from amends.events import Item, ingest_items
from amends.insights.experiment import Verdict, analyse
from amends.insights.outcomes import OutcomeSetError, check_event_types, parse_outcomes, shipped_outcomes
from amends.store import Database, tables

START = datetime(2026, 1, 1, tzinfo=UTC)
HORIZON = timedelta(days=60)
OUTCOMES = parse_outcomes(
    [
        (
            None,
            """
outcomes:
  - {id: complained, title: Complained, kind: happened, from: [complaints, events], events: [complaint.filed],
     within: 30d, better: lower}
  - {id: spend, title: Spend, kind: sum, events: [order.placed], value: data.total, within: 30d, better: higher}
  - {id: silent, title: Silent, kind: absent, events: any, within: 30d, better: lower}
""",
        )
    ]
)


def world(
    db: Database, units: int, *, complain: tuple[float, float], spend: tuple[float, float], seed: int = 1
) -> None:
    """`units` incidents in one period with half held out; a held-out customer complains with chance complain[1]
    and a treated one with complain[0]; each spends an amount that follows their spend before the incident
    (a customer's habit), plus spend[0] or spend[1]."""
    rng = random.Random(seed)
    draws, events = [], []
    for n in range(units):
        held_out = n % 2 == 1
        customer = f"C-{n}"
        failure = START + timedelta(hours=n)
        draws.append(
            {
                "incident_id": n + 1,
                "case_id": n + 1,
                "customer_id": customer,
                "rule_id": "late" if n % 3 else "lost",
                "severity": 2,
                "failure_at": failure,
                "period": "p1",
                "share": 0.5,
                "draw": 0.0 if held_out else 0.9,
                "held_out": held_out,
                "drawn_at": failure,
            }
        )
        habit = rng.uniform(10, 200)
        events.append(_event(f"pre-{n}", "order.placed", customer, failure - timedelta(days=5), total=habit))
        after = habit + (spend[1] if held_out else spend[0]) + rng.gauss(0, 5)
        events.append(_event(f"post-{n}", "order.placed", customer, failure + timedelta(days=5), total=round(after, 2)))
        if rng.random() < (complain[1] if held_out else complain[0]):
            events.append(_event(f"c-{n}", "complaint.filed", customer, failure + timedelta(days=2)))
    with db.unit_of_work(writes=True) as uow:
        uow.execute(sa.insert(tables.holdout_periods).values(id="p1", plan={"share": 0.5}, started_at=START))
        uow.execute(sa.insert(tables.holdout_draws), draws)
        uow.commit()
    ingest_items(db, [Item(e) for e in events], received_at=START + timedelta(days=200))


def _event(id: str, type: str, subject: str, at: datetime, **data: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": id,
        "source": "https://shop.example",
        "type": type,
        "time": at.isoformat(),
        "subject": subject,
        "data": data,
    }


def test_a_known_effect_is_estimated_with_an_interval_that_covers_it(db: Database) -> None:
    world(db, 1_200, complain=(0.10, 0.30), spend=(20.0, 0.0))
    with db.unit_of_work() as uow:
        result = analyse(uow, OUTCOMES, as_of=START + timedelta(days=200), horizon=HORIZON, spend_outcome="spend")
    [round_] = result.rounds
    assert round_.final
    assert (round_.treated, round_.held_out, round_.waiting) == (600, 600, 0)
    by = {(e.outcome.id, e.group): e for e in round_.estimates}
    complained = by["complained", "all"]
    assert complained.method.startswith("Newcombe")  # nobody complained before: the past predicts nothing
    assert complained.low < -0.20 < complained.high  # the truth is 0.10 - 0.30
    assert complained.high < 0
    assert complained.verdict == Verdict.BETTER
    assert complained.held_out.mean == pytest.approx(0.30, abs=0.06)
    assert complained.mde is not None
    assert 0 < complained.mde < 0.1
    spend = by["spend", "all"]
    assert spend.cuped is not None
    assert spend.cuped > 0.5  # a customer's habit explains most of their spend
    assert spend.method.startswith("CUPED")
    assert spend.low < 20.0 < spend.high
    assert spend.high - spend.low < 3.0  # without CUPED the habit's spread (sd ~55) would make it ~9 wide
    assert spend.verdict == Verdict.BETTER
    assert {group for _, group in by} == {"all", "late", "lost"}
    assert by["complained", "lost"].treated.units + by["complained", "late"].treated.units == 600
    assert round_.retained is spend
    silent = by["silent", "all"]
    assert silent.treated.mean == 0.0  # everybody ordered again
    assert silent.verdict == Verdict.NO_DIFFERENCE
    assert silent.low <= 0 <= silent.high
    assert round_.earliest == round_.units["failure_at"].min()
    # What a cache keeps: the same results, without a row per unit.
    kept = result.summary()
    assert kept.rounds[0].units.is_empty()
    assert kept.rounds[0].units.schema == round_.units.schema
    assert kept.rounds[0].estimates == round_.estimates
    assert (kept.rounds[0].treated, kept.rounds[0].earliest) == (600, round_.earliest)


def test_before_the_horizon_is_over_there_is_no_verdict(db: Database) -> None:
    world(db, 1_200, complain=(0.10, 0.30), spend=(20.0, 0.0))
    with db.unit_of_work() as uow:
        early = analyse(uow, OUTCOMES, as_of=START + timedelta(days=70), horizon=HORIZON)
    [round_] = early.rounds
    assert not round_.final
    complained = next(e for e in round_.estimates if e.outcome.id == "complained" and e.group == "all")
    assert complained.verdict == Verdict.INTERIM
    assert complained.low is not None  # shown for information, without a verdict
    # Units drawn in the last 10 days (after hour 960) still wait for their 30 days; the others are measured.
    assert round_.waiting == 239
    assert complained.treated.units + complained.held_out.units == 961


def test_an_experiment_too_small_says_so_and_shows_what_it_could_detect(db: Database) -> None:
    world(db, 24, complain=(0.10, 0.30), spend=(20.0, 0.0))
    with db.unit_of_work() as uow:
        result = analyse(uow, OUTCOMES, as_of=START + timedelta(days=200), horizon=HORIZON)
    complained = next(e for e in result.rounds[0].estimates if e.outcome.id == "complained" and e.group == "all")
    assert complained.verdict == Verdict.TOO_SMALL
    assert complained.mde is not None
    assert complained.mde > 0.2  # twelve a side detect nothing subtle


def test_a_period_with_no_draws_is_empty_not_zero(db: Database) -> None:
    with db.unit_of_work() as uow:
        result = analyse(uow, OUTCOMES, as_of=START, horizon=HORIZON)
    assert result.empty
    assert result.rounds == ()


def test_with_no_effect_the_interval_covers_zero(db: Database) -> None:
    world(db, 1_000, complain=(0.2, 0.2), spend=(0.0, 0.0), seed=5)
    with db.unit_of_work() as uow:
        result = analyse(uow, OUTCOMES, as_of=START + timedelta(days=200), horizon=HORIZON, by_rule=False)
    by = {e.outcome.id: e for e in result.rounds[0].estimates}
    assert by["complained"].low < 0 < by["complained"].high
    assert by["complained"].verdict == Verdict.NO_DIFFERENCE
    assert by["spend"].low < 0 < by["spend"].high


def test_outcome_definitions_are_checked(db: Database, tmp_path: Path) -> None:
    with pytest.raises(OutcomeSetError) as caught:
        parse_outcomes([(tmp_path / "o.yaml", "outcomes:\n  - {id: x, title: X, kind: sum, within: 30d, better: up}")])
    reasons = str(caught.value)
    assert "o.yaml:2: outcomes[0].value: a sum needs a value" in reasons
    assert "outcomes[0].better: required: higher or lower" in reasons
    assert "outcomes[0].events: required for events" in reasons
    world(db, 4, complain=(0.0, 0.0), spend=(0.0, 0.0))
    typo = parse_outcomes(
        [
            (
                None,
                "outcomes:\n  - {id: x, title: X, kind: happened, events: [order.placced], within: 9d, better: lower}",
            )
        ]
    )
    with db.unit_of_work() as uow:
        with pytest.raises(OutcomeSetError, match=r"outcomes.x.events: no event of type 'order.placced'"):
            check_event_types(uow, typo)
        check_event_types(uow, OUTCOMES, known=["complaint.filed"])  # order.placed is stored; settings name the other
        check_event_types(uow, shipped_outcomes(("shop",)), known=["complaint.filed"])


def test_shares_that_differ_by_rule_are_analysed_stratum_by_stratum(db: Database) -> None:
    """Held out at 0.5 for one rule and 0.2 for another: each stratum's difference, weighted by its units."""
    rng = random.Random(9)
    draws, events = [], []
    for n in range(1_500):
        share = 0.5 if n % 2 else 0.2
        held_out = rng.random() < share
        customer, failure = f"S-{n}", START + timedelta(hours=n)
        draws.append({"incident_id": n + 1, "case_id": n + 1, "customer_id": customer, "rule_id": f"r{share}",
                      "severity": 2, "failure_at": failure, "period": "p1", "share": share, "draw": 0.0,
                      "held_out": held_out, "drawn_at": failure})  # fmt: skip
        base = 0.4 if share == 0.5 else 0.1  # the strata differ: pooling them naively would mislead
        if rng.random() < base * (0.5 if not held_out else 1.0):
            events.append(_event(f"c-{n}", "complaint.filed", customer, failure + timedelta(days=3)))
    with db.unit_of_work(writes=True) as uow:
        uow.execute(sa.insert(tables.holdout_periods).values(id="p1", plan={"share": 0.5}, started_at=START))
        uow.execute(sa.insert(tables.holdout_draws), draws)
        uow.commit()
    ingest_items(db, [Item(e) for e in events], received_at=START + timedelta(days=200))
    with db.unit_of_work() as uow:
        result = analyse(uow, OUTCOMES[:1], as_of=START + timedelta(days=200), horizon=HORIZON * 2, by_rule=False)
    [estimate] = result.rounds[0].estimates
    assert estimate.method.startswith("stratified")
    truth = -(0.5 * 0.2 + 0.5 * 0.05)  # each stratum halves its complaints; equal units in each
    assert estimate.low < truth < estimate.high
    assert estimate.high < 0


def test_a_customer_counts_once_by_their_first_draw_and_a_span_takes_whole_rounds(db: Database) -> None:
    world(db, 1_200, complain=(0.10, 0.30), spend=(20.0, 0.0))
    with db.unit_of_work(writes=True) as uow:  # C-0 drawn again later, in the other arm
        later = START + timedelta(days=40)
        uow.execute(sa.insert(tables.holdout_draws).values(
            incident_id=9_999, case_id=9_999, customer_id="C-0", rule_id="late", severity=2, failure_at=later,
            period="p1", share=0.5, draw=0.0, held_out=True, drawn_at=later))  # fmt: skip
        uow.commit()
    with db.unit_of_work() as uow:
        whole = analyse(uow, OUTCOMES[:1], as_of=START + timedelta(days=200), horizon=HORIZON, by_rule=False)
        sliced = analyse(uow, OUTCOMES[:1], as_of=START + timedelta(days=200), horizon=HORIZON, by_rule=False,
                         since=START + timedelta(days=30), until=START + timedelta(days=31))  # fmt: skip
        after = analyse(uow, OUTCOMES[:1], as_of=START + timedelta(days=200), horizon=HORIZON, by_rule=False,
                        since=START + timedelta(days=70))  # fmt: skip
    [round_] = whole.rounds
    assert (round_.treated, round_.held_out) == (600, 600)  # C-0's second draw is not a unit
    assert sliced.rounds[0].treated + sliced.rounds[0].held_out == 1_200  # the whole round, not one day of it
    assert after.empty


def test_estimates_per_remedy_kind_compare_arms_within_the_rule_and_severity_that_grant_it(db: Database) -> None:
    world(db, 600, complain=(0.10, 0.30), spend=(20.0, 0.0))
    with db.unit_of_work(writes=True) as uow:
        d = tables.holdout_draws
        treated = uow.execute(sa.select(d.c.case_id, d.c.customer_id, d.c.rule_id).where(d.c.held_out.is_(False)))
        uow.execute(
            sa.insert(tables.ledger),
            [
                {"entry_key": f"case:{row.case_id}:1", "case_id": row.case_id, "slot": "1",
                 "customer_id": row.customer_id, "incident_id": row.case_id,
                 "kind": "voucher" if row.rule_id == "late" else "miles", "amount": Decimal(20), "unit": "EUR",
                 "cash_value": Decimal(12), "policy": "late", "granted_by": "desk", "at": START}
                for row in treated
            ],
        )  # fmt: skip
        uow.commit()
    with db.unit_of_work() as uow:
        result = analyse(uow, OUTCOMES[:1], as_of=START + timedelta(days=200), horizon=HORIZON)
    [round_] = result.rounds
    by = {e.group: e for e in round_.estimates}
    assert by["remedy: voucher"].treated.units == by["late"].treated.units
    assert by["remedy: voucher"].held_out.units == by["late"].held_out.units  # the held out of the same stratum
    assert by["remedy: miles"].held_out.units == by["lost"].held_out.units
    assert round_.remedy_spend == pytest.approx(12.0 * 300)  # the held out got nothing: all of it is recovery's
