"""The holdout experiment, on both engines: a share of the incidents opening proactive cases is drawn into the
holdout, once and for good; nothing proactive goes out on a held-out case, until the customer raises it or a
severe incident lifts it; the draw cannot be changed after the fact; silent held-out cases close."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from amends.access import Scope
from amends.config import Settings
from amends.recover.holdout import HoldoutPlan
from amends.recover.roles import Role
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import SECRET, new_key, settings_for
from tests.test_recovery import World, arrival, booking, profile, staff_key

CUSTOMERS = 24


def holdout_world(db: Database, **holdout: Any) -> Iterator[World]:
    keys = {
        "ana": staff_key(db, "ana", Role.AGENT, "air"),
        "boss": staff_key(db, "boss", Role.MANAGER, "air"),
        "integration": new_key(db, "integration", [Scope.EVENTS_WRITE, Scope.COMPLAINTS_WRITE]),
    }
    settings = settings_for(
        db,
        rule_packs=("airline",),
        detect_clock="events",
        detect_allowed_lateness="0s",
        assign_teams={"air-*": "air"},
        **holdout,
    )
    app = create_app(settings, db)
    with TestClient(app) as client:
        yield World(client, db, app.state.recovery, keys)


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    yield from holdout_world(db, holdout_shares={"air-long-delay": 0.5}, holdout_ceiling=3)


def delayed(world: World, customers: int = CUSTOMERS, delay: int = 200) -> None:
    """`customers` passengers, each with a profile, a booking and a flight `delay` minutes late."""
    events: list[dict[str, object]] = []
    for n in range(1, customers + 1):
        subject = f"C-{n}"
        events += [profile(subject), booking(n, subject, 400.0), arrival(n, subject, delay, booking_ref=f"BK{n}")]
    world.send(*events)


def post(world: World, path: str, who: str = "ana", **body: Any) -> dict[str, Any]:
    response = world.client.post(path, json=body, headers=world.as_(who))
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def draws(db: Database) -> list[Any]:
    with db.unit_of_work() as uow:
        return list(uow.execute(sa.select(tables.holdout_draws).order_by(tables.holdout_draws.c.case_id)))


def cases(db: Database) -> dict[int, Any]:
    with db.unit_of_work() as uow:
        return {row.id: row for row in uow.execute(sa.select(tables.cases))}


def test_the_draw_is_a_hash_of_salt_rule_and_key_and_the_most_specific_share_applies() -> None:
    plan = HoldoutPlan(0.1, {"r@3": 0.4, "r": 0.2, "*@1": 0.3}, ceiling=4, salt="s")
    assert plan.draw("r", "k1") == HoldoutPlan(0.3, salt="s").draw("r", "k1")  # the share does not move the number
    assert plan.draw("r", "k1") != HoldoutPlan(salt="other").draw("r", "k1")
    assert plan.draw("r", "k1") != plan.draw("r", "k2") != plan.draw("q", "k1")
    assert plan.share_for("r", 3) == 0.4
    assert plan.share_for("r", 1) == 0.2  # the rule before any rule at a severity
    assert plan.share_for("q", 1) == 0.3
    assert plan.share_for("q", 2) == 0.1
    assert plan.share_for("r", 5) == 0.0  # above the ceiling: never
    assert not HoldoutPlan(0.1, ceiling=0).running
    assert not HoldoutPlan(0.0).running
    assert plan.running
    # A new share is a new period; the same settings, the same period.
    assert plan.period == HoldoutPlan(0.1, {"r@3": 0.4, "r": 0.2, "*@1": 0.3}, ceiling=4, salt="s").period
    assert plan.period != HoldoutPlan(0.15, {"r@3": 0.4, "r": 0.2, "*@1": 0.3}, ceiling=4, salt="s").period


def test_the_draw_holds_out_the_share_it_is_given() -> None:
    plan = HoldoutPlan(0.1)
    numbers = [plan.draw("air-long-delay", f"BK{n}") for n in range(40_000)]
    held = sum(number < 0.1 for number in numbers) / len(numbers)
    assert abs(held - 0.1) < 0.006  # five standard errors of a fair coin with p = 0.1
    assert all(0.0 <= number < 1.0 for number in numbers)


def test_settings_name_bad_shares() -> None:
    for shares, named in (({"r@9": 0.1}, "r@9"), ({"*": 0.1}, "'*'"), ({"r": 0.7}, "0.7"), ({"@2": 0.1}, "@2")):
        with pytest.raises(ValidationError, match="holdout_shares") as caught:
            Settings(secret_key=SECRET, holdout_shares=shares)
        assert named in str(caught.value)
    with pytest.raises(ValidationError, match="holdout_share"):
        Settings(secret_key=SECRET, holdout_share=0.9)
    assert Settings.model_fields["holdout_share"].default == 0.1  # on unless turned off


def test_held_out_cases_are_recorded_but_wait_and_nothing_proactive_goes_out(world: World) -> None:
    delayed(world)
    drawn = draws(world.db)
    opened = cases(world.db)
    assert len(drawn) == len(opened) == CUSTOMERS
    plan = HoldoutPlan(shares={"air-long-delay": 0.5}, ceiling=3, salt="amends")
    for draw in drawn:
        assert draw.share == 0.5
        assert draw.period == plan.period
        assert draw.held_out == (plan.draw("air-long-delay", _key(world.db, draw.incident_id)) < 0.5)
        assert opened[draw.case_id].held_out == draw.held_out
    held = [draw.case_id for draw in drawn if draw.held_out]
    treated = [draw.case_id for draw in drawn if not draw.held_out]
    assert held
    assert treated

    with world.db.unit_of_work() as uow:
        steps = tables.case_steps
        due = uow.execute(sa.select(steps.c.case_id, steps.c.due_at).where(steps.c.case_id.in_(held))).all()
    assert due
    assert all(row.due_at is None for row in due)
    assert all(opened[case_id].owner_id is None for case_id in held)
    assert all(opened[case_id].owner_id == "ana" for case_id in treated)

    case_id = held[0]
    refused = world.client.post(f"/v1/cases/{case_id}/steps/empathise/complete", json={}, headers=world.as_("boss"))
    assert refused.status_code == 409
    assert "holdout" in refused.json()["reason"]
    grant = {"kind": "voucher", "amount": "20"}
    refused = world.client.post(f"/v1/cases/{case_id}/remedies", json=grant, headers=world.as_("boss"))
    assert refused.status_code == 409
    assert "holdout" in refused.json()["reason"]
    queue = world.client.get("/v1/cases", headers=world.as_("boss")).json()["cases"]
    assert {case["id"]: case["held_out"] for case in queue} == {c: c in held for c in held + treated}

    treated_case = treated[0]
    post(world, f"/v1/cases/{treated_case}/acknowledge")
    [apology] = post(world, f"/v1/cases/{treated_case}/steps/empathise/complete")["messages"]
    assert apology["kind"] == "apology"
    with world.db.unit_of_work() as uow:
        sent_to = set(uow.execute(sa.select(tables.messages.c.case_id)).scalars())
    assert sent_to == {treated_case}


def test_a_customer_who_raises_it_is_helped_normally(world: World) -> None:
    delayed(world)
    case_id = next(draw.case_id for draw in draws(world.db) if draw.held_out)
    customer = cases(world.db)[case_id].customer_id
    complaint = {
        "source": "https://air.example/support",
        "id": "T-1",
        "customer": customer,
        "channel": "email",
        "text": "My flight was hours late and nobody said sorry.",
        "reference": f"BK{customer.removeprefix('C-')}",
    }
    response = world.client.post("/v1/complaints", json=complaint, headers=world.as_("integration"))
    assert response.status_code in (200, 201), response.text
    case = cases(world.db)[case_id]
    assert case.customer_spoke_at is not None
    assert case.owner_id == "ana"
    with world.db.unit_of_work() as uow:
        steps = tables.case_steps
        due = uow.execute(sa.select(steps.c.due_at).where(steps.c.case_id == case_id, steps.c.kind == "empathise"))
        assert due.scalar_one() is not None
    post(world, f"/v1/cases/{case_id}/acknowledge")
    [answer] = post(world, f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
    assert answer["kind"] == "apology"
    post(world, f"/v1/cases/{case_id}/remedies", kind="voucher", amount="20")
    [draw] = [draw for draw in draws(world.db) if draw.case_id == case_id]
    assert draw.held_out  # it stays in the held-out arm: analysed as drawn


def test_an_incident_above_the_ceiling_lifts_the_holdout_of_the_case_it_joins(world: World) -> None:
    delayed(world)
    case_id = next(draw.case_id for draw in draws(world.db) if draw.held_out)
    customer = cases(world.db)[case_id].customer_id
    number = int(customer.removeprefix("C-"))
    world.send(arrival(500 + number, customer, 800, day=23, booking_ref=f"BK{number}"))  # severity 4 > ceiling 3
    case = cases(world.db)[case_id]
    assert case.holdout_lifted_at is not None
    assert case.owner_id == "ana"
    post(world, f"/v1/cases/{case_id}/acknowledge")
    [apology] = post(world, f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
    assert apology["kind"] == "apology"
    assert len(draws(world.db)) == CUSTOMERS  # the joining incident is not drawn


def test_the_draw_cannot_be_changed_after_the_fact(world: World, db: Database) -> None:
    delayed(world)
    before = [tuple(row) for row in draws(db)]
    for statement in (
        sa.update(tables.holdout_draws).values(held_out=sa.not_(tables.holdout_draws.c.held_out)),
        sa.delete(tables.holdout_draws),
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.engine.begin() as connection:
            connection.execute(statement)
    # A case's arm is fixed when it opens, and a period's settings when it starts: no statement changes them.
    for statement in (
        sa.update(tables.cases).values(held_out=sa.not_(tables.cases.c.held_out)),
        sa.update(tables.holdout_periods).values(started_at=tables.holdout_periods.c.started_at),
        sa.delete(tables.holdout_periods),
    ):
        with pytest.raises(sa.exc.DBAPIError, match=r"held_out is fixed|append-only"), db.engine.begin() as connection:
            connection.execute(statement)
    # Intake again, and a new share, draw nobody twice; a new incident is drawn in the new period.
    world.recovery.tick()
    assert [tuple(row) for row in draws(db)] == before
    for world2 in holdout_world_again(db, holdout_shares={"air-long-delay": 0.3}, holdout_ceiling=3):
        world2.send(profile("C-99"), booking(28, "C-99", 400.0), arrival(99, "C-99", 200, day=25, booking_ref="BK28"))
        after = draws(db)
    assert [tuple(row) for row in after[:CUSTOMERS]] == before
    [new] = after[CUSTOMERS:]
    assert new.share == 0.3
    assert new.period != before[0][6]
    with db.unit_of_work() as uow:
        assert uow.execute(sa.select(sa.func.count()).select_from(tables.holdout_periods)).scalar_one() == 2


def holdout_world_again(db: Database, **holdout: Any) -> Iterator[World]:
    """A second app on the same database (staff already there), with other settings."""
    keys = {"integration": new_key(db, "integration-2", [Scope.EVENTS_WRITE])}
    settings = settings_for(db, rule_packs=("airline",), detect_clock="events", detect_allowed_lateness="0s", **holdout)
    app = create_app(settings, db)
    with TestClient(app) as client:
        yield World(client, db, app.state.recovery, keys)


def test_held_out_cases_nobody_raised_close_after_the_window(world: World) -> None:
    delayed(world)
    held = {draw.case_id for draw in draws(world.db) if draw.held_out}
    opened = max(case.opened_at for case in cases(world.db).values())
    world.recovery.tick(opened + timedelta(days=29))
    assert all(cases(world.db)[case_id].status == "open" for case_id in held)
    world.recovery.tick(opened + timedelta(days=30))
    after = cases(world.db)
    assert {case_id for case_id, case in after.items() if case.status == "closed"} == held
    assert all(after[case_id].resolution.startswith("Held out") for case_id in held)
    assert all(after[case_id].resolved_at is None for case_id in held)  # nothing was done: no follow-up, no survey


def _key(db: Database, incident_id: int) -> str:
    with db.unit_of_work() as uow:
        return str(uow.execute(sa.select(tables.incidents.c.key).where(tables.incidents.c.id == incident_id)).scalar())


def test_staff_do_not_contact_a_held_out_customer_but_their_call_ends_the_holdout(world: World) -> None:
    delayed(world)
    case_id = next(draw.case_id for draw in draws(world.db) if draw.held_out)
    call = {"direction": "outbound", "channel": "phone", "note": "Rang to apologise"}
    refused = world.client.post(f"/v1/cases/{case_id}/contacts", json=call, headers=world.as_("boss"))
    assert refused.status_code == 409
    assert "holdout" in refused.json()["reason"]
    inbound = {"direction": "inbound", "channel": "phone", "note": "The customer rang about the delay"}
    post(world, f"/v1/cases/{case_id}/contacts", "boss", **inbound)
    world.recovery.tick()  # the next tick works it like a case a complaint raised
    case = cases(world.db)[case_id]
    assert case.owner_id == "ana"
    with world.db.unit_of_work() as uow:
        steps = tables.case_steps
        due = uow.execute(sa.select(steps.c.due_at).where(steps.c.case_id == case_id, steps.c.kind == "empathise"))
        assert due.scalar_one() is not None
    [apology] = post(world, f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
    assert apology["kind"] == "apology"
