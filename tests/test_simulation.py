"""A world that reacts: customers whose failure is answered in time by an apology with a remedy complain and leave
less by the true effect, a late one changes nothing, and nothing else in the world moves; run with amends in the
loop, the holdout experiment's interval covers the world's own truth, and finds no effect where there is none."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from amends.cli import app
from amends.config import Settings
from amends.simulation import Simulation, simulate, simulation_settings
from amends.store import Database, tables, upgrade
from amends.world import WorldError, generate_world
from tests.conftest import SECRET

DAYS = 60


def _failures(business: str, seed: int, **options: object) -> tuple[list[dict[str, object]], object]:
    world = generate_world(business, customers=400, days=DAYS, seed=seed, **options)  # type: ignore[arg-type]
    return list(world), world


def test_a_world_without_an_effect_does_not_react_and_one_with_zero_is_the_same_world() -> None:
    plain = generate_world("airline", customers=200, days=30, seed=3)
    events = list(plain)
    with pytest.raises(WorldError, match="true_effect"):
        plain.recovered("air-000001", plain.now)
    zero = generate_world("airline", customers=200, days=30, seed=3, true_effect=0.0)
    assert list(zero) == events
    assert zero.reacted is not None
    assert zero.reacted.won_back == 0
    with pytest.raises(WorldError, match="true_effect"):
        generate_world("airline", customers=10, days=5, seed=1, true_effect=1.5)


def test_a_timely_recovery_wins_customers_back_and_a_late_one_does_not() -> None:
    """Every customer is told of a recovery the moment their failure shows; with an effect of 1 they are all won
    back: the complaints they would have made are not made (and are counted as prevented)."""
    for timely in (timedelta(hours=48), timedelta(milliseconds=1)):
        baseline = generate_world("airline", customers=600, days=DAYS, seed=5, true_effect=0.0)
        reacting = generate_world("airline", customers=600, days=DAYS, seed=5, true_effect=1.0, timely=timely)
        made = {0: 0, 1: 0}
        for n, world in enumerate((baseline, reacting)):
            for envelope in world:
                if envelope["type"] in ("flight.arrived", "flight.cancelled", "connection.missed"):
                    data = envelope["data"]
                    if envelope["type"] != "flight.arrived" or int(data.get("delay_minutes", 0)) >= 180:
                        world.recovered(str(envelope["subject"]), world.now + timedelta(hours=1))
                elif envelope["type"] == "complaint.filed":
                    made[n] += 1
        reacted = reacting.reacted
        assert reacted is not None
        if timely > timedelta(hours=1):
            assert reacted.timely > 0
            assert reacted.won_back == reacted.timely
            assert made[1] < made[0]
            assert reacted.complaints_prevented == len(list(reacting.prevented())) > 0
        else:  # told an hour after: too late for a timeliness of 1 ms
            assert reacted.timely == 0
            assert reacted.late > 0
            assert made[1] == made[0]


def test_a_customer_won_back_stays_won_back_for_ninety_days_and_no_longer() -> None:
    world = generate_world("airline", customers=300, days=30, seed=2, true_effect=1.0)
    failed = next(e for e in world if e["type"] in ("flight.cancelled", "connection.missed"))
    customer, at = str(failed["subject"]), world.now + timedelta(hours=1)
    assert not world.won_back(customer, at)
    assert world.recovered(customer, at)  # within 48 hours of the failure, and an effect of 1: won back
    assert world.won_back(customer, at + timedelta(days=89))
    assert not world.won_back(customer, at + timedelta(days=91))
    assert not world.won_back("nobody", at)
    plain = generate_world("airline", customers=50, days=20, seed=2)
    assert not plain.won_back(customer, at)


def run(tmp_path: Path, seed: int, effect: float, customers: int = 500) -> Simulation:
    path = tmp_path / f"sim-{seed}-{effect}.db"
    settings = simulation_settings(
        Settings(database_url=f"sqlite:///{path}", secret_key=SECRET),
        business="airline",
        outbox_file=tmp_path / f"outbox-{seed}.jsonl",
        holdout_share=0.5,
    )
    db = Database.from_settings(settings)
    try:
        upgrade(db)
        result = simulate(db, settings, business="airline", customers=customers, days=DAYS, seed=seed,
                          true_effect=effect)  # fmt: skip
        with db.unit_of_work() as uow:
            m, d = tables.messages, tables.holdout_draws
            held_out_messages = uow.execute(
                sa.select(sa.func.count())
                .select_from(m.join(d, d.c.case_id == m.c.case_id))
                .where(d.c.held_out.is_(True))
            ).scalar_one()
        assert held_out_messages == 0  # the product withheld everything proactive from the held-out cases
    finally:
        db.dispose()
    return result


def test_with_amends_in_the_loop_the_interval_covers_the_worlds_truth(tmp_path: Path) -> None:
    """Six seeds (bench/uplift.py runs a hundred): each interval covers the truth; with no effect, none is
    significant. The worlds are small, so the intervals are wide; the bench shows them narrow and still right."""
    covered = significant = 0
    for seed in range(1, 4):
        with_effect = run(tmp_path, seed, 0.5)
        assert with_effect.truth is not None
        assert with_effect.reacted is not None
        assert with_effect.reacted.timely > 0
        assert with_effect.truth.effect <= 0  # fewer complaints, never more
        estimate = with_effect.estimate("complained")
        assert estimate is not None
        assert estimate.low is not None
        assert estimate.high is not None
        covered += estimate.low <= with_effect.truth.effect <= estimate.high
        without = run(tmp_path, seed, 0.0)
        assert without.truth is not None
        assert without.truth.effect == 0
        none = without.estimate("complained")
        assert none is not None
        assert none.low is not None
        assert none.high is not None
        significant += not none.low <= 0 <= none.high
    assert covered == 3
    assert significant == 0


def test_world_simulate_prints_the_estimate_beside_the_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMENDS_SECRET_KEY", SECRET)
    result = CliRunner().invoke(
        app,
        ["world", "simulate", "--business", "airline", "--days", "60", "--customers", "300", "--true-effect", "0.3"],
    )
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.replace("│", " ").split())
    assert "The holdout experiment, first round" in words
    assert "The world's own truth for the treated" in words
    assert (tmp_path / "amends-simulation.db").exists()
    refused = CliRunner().invoke(app, ["world", "simulate", "--business", "bakery"])
    assert refused.exit_code == 2
    assert "--business" in refused.output
