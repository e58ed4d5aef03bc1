"""The `risk` rule kind: rules that open incidents from the risk model's scores (detect/risk/watch.py), on each
engine, and the cases they become."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from amends.config import Settings
from amends.detect.errors import RuleSetError
from amends.detect.risk.data import load_records
from amends.detect.risk.service import train_model
from amends.detect.risk.spec import shipped_spec
from amends.detect.risk.watch import RiskWatch
from amends.detect.rules import CHECK_IN_PLAYBOOK, RiskRule, parse_rules
from amends.detect.service import Detection
from amends.events import Item, ingest_items
from amends.recover.service import Recovery
from amends.store import Database, tables
from amends.world import generate_world
from tests.conftest import SECRET

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 120
TRAINED = START + timedelta(days=100)  # the model learns from the first 100 days; the rest arrives afterwards
END = START + timedelta(days=DAYS)


def risk_rules(text: str) -> tuple[RiskRule, ...]:
    return parse_rules([(None, text)]).risk


def test_a_risk_rule_is_read_apart_from_the_rules_that_read_events() -> None:
    rules = parse_rules([(None, """
rules:
  - id: late
    kind: match
    on: order.delivered
  - id: likely-unhappy
    kind: risk
    at_least: 0.4
    top: 20
    severity: 3
    cooldown: 30d
""")])  # fmt: skip
    assert [rule.common.id for rule in rules] == ["late"]  # the evaluators never see it
    [risk] = rules.risk
    assert (risk.at_least, risk.top, risk.common.severity.fixed) == (0.4, 20, 3)
    assert risk.common.cooldown == timedelta(days=30)
    assert risk.common.playbook == CHECK_IN_PLAYBOOK  # nothing is known to have gone wrong: a check-in
    assert len(rules) == 2
    assert rules.get("likely-unhappy") is risk


@pytest.mark.parametrize(
    ("body", "field", "line", "reason"),
    [
        ("", "rules[0]", 2, "needs at_least"),
        ("at_least: 1.5", "rules[0].at_least", 4, "less than or equal to 1"),
        ("at_least: 0", "rules[0].at_least", 4, "greater than 0"),
        ("top: 0", "rules[0].top", 4, "greater than or equal to 1"),
        ("at_least: 0.5\n    on: order.delivered", "rules[0].on", 5, "unknown field"),
    ],
)
def test_a_bad_risk_rule_is_refused_naming_the_field(body: str, field: str, line: int, reason: str) -> None:
    with pytest.raises(RuleSetError) as caught:
        parse_rules([(None, f"rules:\n  - id: r\n    kind: risk\n    {body}\n")])
    [problem] = caught.value.problems
    assert problem.field == field
    assert reason in problem.reason
    assert problem.line == line


def stored_shop(db: Database) -> Settings:
    """A shop's first 100 days stored and a model trained on them; the last 20 days stored after."""
    envelopes = list(generate_world("shop", customers=1_500, days=DAYS, seed=7, start=START))
    early = [e for e in envelopes if datetime.fromisoformat(e["time"]) < TRAINED]
    late = [e for e in envelopes if datetime.fromisoformat(e["time"]) >= TRAINED]
    ingest_items(db, [Item(e) for e in early], received_at=TRAINED)
    settings = Settings(database_url="sqlite://", secret_key=SECRET, rule_packs=("shop",))  # type: ignore[arg-type]
    train_model(db, settings, spec=shipped_spec(("shop",)), now=TRAINED)
    ingest_items(db, [Item(e) for e in late], received_at=END)
    return settings


def moments_since(db: Database, since: datetime) -> set[tuple[str, datetime]]:
    moments = shipped_spec(("shop",)).moments
    e = tables.events
    with db.unit_of_work() as uow:
        rows = uow.execute(sa.select(e.c.subject, e.c.time).where(e.c.type.in_(moments), e.c.time >= since)).all()
    return {(row.subject, row.time.astimezone(UTC)) for row in rows}


def incidents(db: Database) -> list[sa.Row[tuple[object, ...]]]:
    i = tables.incidents
    with db.unit_of_work() as uow:
        return list(uow.execute(sa.select(i).order_by(i.c.id)).all())


def test_a_threshold_rule_opens_an_incident_for_each_risky_moment_within_the_window(db: Database) -> None:
    settings = stored_shop(db)
    [rule] = risk_rules("rules:\n  - id: likely-unhappy\n    kind: risk\n    at_least: 0.3\n    cooldown: 7d\n")
    watch = RiskWatch(batch=200)  # several ticks' worth
    ticks = 0
    while _behind(db, watch) and ticks < 100:
        watch.tick(db, [rule], now=END)
        ticks += 1
    assert ticks > 1
    window = shipped_spec(("shop",)).label.within
    recent = moments_since(db, END - window)
    s = tables.risk_scores
    with db.unit_of_work() as uow:
        scores = {(r.customer_id, r.at.astimezone(UTC)): (r.score, r.reasons) for r in uow.execute(sa.select(s))}
    assert set(scores) == recent  # every moment of the window scored once; none older
    found = incidents(db)
    assert found, "some moments are risky enough"
    for incident in found:
        facts = incident.facts
        assert incident.rule_id == "likely-unhappy"
        assert incident.detected_by == "risk"
        assert incident.playbook == CHECK_IN_PLAYBOOK
        assert facts["risk"] >= 0.3
        assert facts["risk"] == pytest.approx(scores[incident.customer_id, incident.failure_at.astimezone(UTC)][0],
                                              abs=1e-4)  # fmt: skip
        assert facts["event"]["type"] in shipped_spec(("shop",)).moments
        assert isinstance(facts["data"], dict)
        assert facts["reasons"], "each incident says what pushed its risk up"
        assert all(reason["text"] and reason["description"] for reason in facts["reasons"])
    # Every risky moment opened one, unless the customer has one of the rule within the cooldown of it (the riskier
    # moment first); no two of a customer's incidents are within the cooldown of each other.
    opened = {(i.customer_id, i.failure_at.astimezone(UTC)) for i in found}
    by_customer: dict[str, list[datetime]] = {}
    for customer, at in opened:
        by_customer.setdefault(customer, []).append(at)
    for customer, ats in by_customer.items():
        ats.sort()
        assert all(b - a >= timedelta(days=7) for a, b in itertools.pairwise(ats)), customer
    for (customer, at), (score, _) in scores.items():
        if score >= 0.3 and (customer, at) not in opened:
            assert any(abs(at - t) < timedelta(days=7) for t in by_customer.get(customer, [])), (customer, at)
    assert any(score >= 0.3 and key not in opened for key, (score, _) in scores.items()), "the cooldown held some"
    assert len(opened) == len(found)

    # The model's own forecasts are not failures: the features never count them (no feedback of scores into scores).
    with db.unit_of_work() as uow:
        assert load_records(uow).incidents.is_empty()

    # Nothing twice: the cursor is past these moments, and a moment's incident key is its event's.
    assert watch.tick(db, [rule], now=END).opened == 0
    assert RiskWatch(name="another").tick(db, [rule], now=END).opened == 0  # scored again: the incident keys hold

    # The incidents become cases like any other, following the check-in playbook.
    Recovery.from_settings(db, settings.model_copy(update={"holdout_share": 0.0})).tick(now=END)
    c = tables.cases
    with db.unit_of_work() as uow:
        playbooks = uow.execute(sa.select(c.c.playbook, sa.func.count()).group_by(c.c.playbook)).all()
    assert dict(playbooks) == {CHECK_IN_PLAYBOOK: len({i.customer_id for i in found})}


def _behind(db: Database, watch: RiskWatch) -> bool:
    with db.unit_of_work() as uow:
        cursor = uow.execute(sa.select(tables.risk_watch.c.seq).where(tables.risk_watch.c.name == watch.name))
        seq = cursor.scalar_one_or_none()
        newest = uow.execute(sa.select(sa.func.max(tables.events.c.seq))).scalar_one()
    return seq is None or seq < newest


def test_a_budget_rule_opens_at_most_its_top_a_day_highest_risk_first(db: Database) -> None:
    stored_shop(db)
    [rule] = risk_rules("rules:\n  - id: riskiest\n    kind: risk\n    top: 5\n    cooldown: 1h\n")
    watch = RiskWatch()
    watch.tick(db, [rule], now=END)
    assert not _behind(db, watch)
    found = incidents(db)
    assert len(found) == 5  # one day's budget, all of it spent today
    # On the day's moments only (the older ones of the window had their days), the five riskiest.
    s = tables.risk_scores
    with db.unit_of_work() as uow:
        today = uow.execute(sa.select(s.c.score).where(s.c.at > END - timedelta(days=1))).scalars().all()
        scored = uow.execute(sa.select(sa.func.count()).select_from(s)).scalar_one()
    assert scored > len(today) > 5
    assert sorted((i.facts["risk"] for i in found), reverse=True) == pytest.approx(
        sorted(today, reverse=True)[:5], abs=1e-4
    )
    assert all(i.failure_at.astimezone(UTC) > END - timedelta(days=1) for i in found)
    # Spent for today: a new moment of the riskiest customer opens nothing more.
    riskiest = max(found, key=lambda i: i.facts["risk"]).customer_id
    ingest_items(db, [Item(_moment(riskiest, END - timedelta(minutes=30)))], received_at=END)
    assert watch.tick(db, [rule], now=END).opened == 0
    # The next day the budget is there again: new moments of the day's five riskiest open at most five, each at
    # least the threshold of an average day's fifth highest of the week.
    tomorrow = END + timedelta(days=1)
    riskiest_five = sorted(found, key=lambda i: -i.facts["risk"])
    again = [Item(_moment(i.customer_id, tomorrow - timedelta(hours=1), "next")) for i in riskiest_five]
    ingest_items(db, again, received_at=tomorrow)
    opened = watch.tick(db, [rule], now=tomorrow).opened
    assert opened <= 5
    for incident in incidents(db)[5:]:
        assert 0 < incident.facts["threshold"] <= incident.facts["risk"]


def test_a_budget_threshold_is_an_average_days_top_over_the_last_week_of_moments(db: Database) -> None:
    s = tables.risk_scores
    now = END

    def score(customer: str, at: datetime, value: float, *, by: str = "watch", model: int = 1) -> None:
        uow.execute(sa.insert(s).values(model_id=model, customer_id=customer, at=at, score=value, reasons=[],
                                        scored_at=now, scored_by=by))  # fmt: skip

    with db.unit_of_work(writes=True) as uow:
        for day in range(3):  # three days of moments, ten a day: 0.00 ... 0.29, under two model versions
            for n in range(10):
                score(f"C-{day}-{n}", now - timedelta(days=3) + timedelta(days=day, hours=n), (day * 10 + n) / 100,
                      model=1 + day // 2)  # fmt: skip
        score("C-old", now - timedelta(days=11), 0.99)  # older than the week
        score("C-bulk", now - timedelta(days=1), 0.98, by="score")  # amends score's, not a moment
        score("C-later", now + timedelta(hours=1), 0.97)  # not yet
        uow.commit()
    # Three days: an average day's 2nd highest is the 6th highest of the three days' thirty (0.24).
    assert _budget_threshold_of(db, top=2, now=now) == pytest.approx(0.24)
    assert _budget_threshold_of(db, top=2, now=now - timedelta(days=2, hours=12)) is None  # not a day of them yet


def _budget_threshold_of(db: Database, *, top: int, now: datetime) -> float | None:
    from amends.detect.risk.watch import _budget_threshold

    with db.unit_of_work() as uow:
        return _budget_threshold(uow, top, now=now)


def _scores(db: Database) -> list[tuple[str, float]]:
    s = tables.risk_scores
    with db.unit_of_work() as uow:
        return [(r.customer_id, r.score) for r in uow.execute(sa.select(s).order_by(s.c.id))]


def _moment(customer: str, at: datetime, tag: str = "") -> dict[str, object]:
    return {"specversion": "1.0", "id": f"late-{customer}{tag}", "source": "test", "type": "order.delivered",
            "time": at.isoformat(), "subject": customer, "data": {"order_id": "O-1"}}  # fmt: skip


def test_without_a_trained_model_a_risk_rule_waits_and_says_why(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    ingest_items(db, [Item(_moment("C-1", END - timedelta(hours=1)))], received_at=END)
    [rule] = risk_rules("rules:\n  - id: r\n    kind: risk\n    at_least: 0.1\n")
    watch = RiskWatch()
    with caplog.at_level(logging.WARNING):
        assert watch.tick(db, [rule], now=END).opened == 0
        assert watch.tick(db, [rule], now=END).opened == 0
    assert [r.message for r in caplog.records].count(
        "risk rules are enabled but no risk model is trained yet: run amends train"
    ) == 1
    assert incidents(db) == []
    with db.unit_of_work() as uow:  # the moments wait for the model: the cursor has not moved past them
        assert uow.execute(sa.select(tables.risk_watch)).first() is None


def test_the_background_sweep_runs_the_risk_rules_of_the_rule_files(db: Database, tmp_path: Path) -> None:
    settings = stored_shop(db)
    (tmp_path / "risk.yaml").write_text("rules:\n  - id: likely-unhappy\n    kind: risk\n    at_least: 0.3\n")
    detection = Detection.from_settings(db, settings.model_copy(update={"rules_dir": tmp_path}))
    assert [rule.common.id for rule in detection.detector.rules.risk] == ["likely-unhappy"]
    detected = detection.tick(now=END)
    assert detected.opened == len(incidents(db)) > 0
    assert {i.rule_id for i in incidents(db)} == {"likely-unhappy"}
