"""Recovery through the API, on both engines: an incident opens a proactive case with its playbook and an
owner; staff work it through the steps; remedies are granted within authority or through a manager's
approval; the ledger pays once, also under concurrency; complaints link to what the case covers; nobody
reads or changes a case they should not."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.access import Scope
from amends.errors import Conflict, Forbidden
from amends.recover import remedies
from amends.recover.actors import Actor
from amends.recover.policy import shipped_policy
from amends.recover.roles import Role
from amends.recover.service import Recovery
from amends.recover.staff import add_staff, create_staff_key, get_staff
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import empty_tables, new_key, settings_for

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def booking(number: int, subject: str, fare: float) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"b-{number}",
        "source": "https://air.example",
        "type": "booking.confirmed",
        "time": f"2026-10-{number:02d}T08:00:00Z",
        "subject": subject,
        "data": {"booking_ref": f"BK{number}", "fare": fare, "currency": "EUR"},
    }


def arrival(number: int, subject: str, delay: int, day: int = 20, booking_ref: str = "BK1") -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"f-{number}",
        "source": "https://air.example",
        "type": "flight.arrived",
        "time": f"2026-10-{day:02d}T10:00:00Z",
        "subject": subject,
        "data": {"flight_no": f"AA{number}", "booking_ref": booking_ref, "delay_minutes": delay},
    }


def profile(subject: str, number: int = 1, **fields: object) -> dict[str, object]:
    """What the company's CRM says of a customer: how to reach them."""
    data = fields or {"name": "Alex Doe", "email": f"{subject.lower()}@example.com", "language": "en"}
    return {
        "specversion": "1.0",
        "id": f"p-{subject}-{number}",
        "source": "https://crm.example",
        "type": "customer.profile",
        "time": "2026-09-01T08:00:00Z",
        "subject": subject,
        "data": data,
    }


@dataclass
class World:
    client: TestClient
    db: Database
    recovery: Recovery
    keys: dict[str, str]
    sent: int = 0

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def send(self, *events: dict[str, object]) -> None:
        """Store the events; one more, later, moves detection's watermark past them (the events clock)."""
        self.sent += 1
        later = {**arrival(900 + self.sent, "C-0", 0, day=31), "type": "clock.tick"}
        response = self.client.post("/v1/events", json=[*events, later], headers=self.as_("integration"))
        assert response.status_code == 200, response.text
        self.recovery.tick()

    def case_of(self, customer: str) -> dict[str, Any]:
        listed = self.client.get(f"/v1/cases?customer={customer}", headers=self.as_("boss")).json()["cases"]
        assert len(listed) == 1
        detail: dict[str, Any] = self.client.get(f"/v1/cases/{listed[0]['id']}", headers=self.as_("boss")).json()
        return detail


def staff_key(db: Database, staff_id: str, role: Role, team: str | None = None) -> str:
    with db.unit_of_work() as uow:
        add_staff(uow, staff_id, name=staff_id.title(), role=role, team=team, now=NOW)
        _key, text = create_staff_key(uow, staff_id, now=datetime.now(UTC))  # it expires: made now, not at NOW
        uow.commit()
    return text


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    keys = {
        "ana": staff_key(db, "ana", Role.AGENT, "air"),
        "bob": staff_key(db, "bob", Role.AGENT, "shop"),
        "boss": staff_key(db, "boss", Role.MANAGER, "air"),
        "integration": new_key(db, "integration", [Scope.EVENTS_WRITE, Scope.COMPLAINTS_WRITE]),
        "reader": new_key(db, "reader", [Scope.CASES_READ]),
    }
    settings = settings_for(
        db,
        rule_packs=("airline",),
        detect_clock="events",
        detect_allowed_lateness="0s",
        assign_teams={"air-*": "air"},
    )
    app = create_app(settings, db)
    with TestClient(app) as client:
        yield World(client, db, app.state.recovery, keys)


def count(db: Database, table: str) -> int:
    with db.unit_of_work() as uow:
        return int(uow.execute(sa.select(sa.func.count()).select_from(tables.metadata.tables[table])).scalar_one())


def test_an_incident_opens_a_proactive_case_with_its_playbook_and_an_owner_and_more_join_it(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    detail = world.case_of("C-1")
    case = detail["case"]
    assert case["origin"] == "proactive"
    assert case["playbook"] == "long-delay"
    assert case["owner_id"] == "ana"  # round-robin within the team the rule maps to
    assert case["team"] == "air"
    assert case["severity"] == 3
    assert [s["kind"] for s in detail["steps"]] == [
        "empathise",
        "take_ownership",
        "lessen_inconvenience",
        "manage_memory",
        "extend_experience",
    ]
    assert detail["steps"][0]["due_at"] is not None
    assert detail["steps"][3]["due_at"] is None  # anchored on a resolution still to come
    assert detail["handoffs"][0]["from_id"] is None
    assert detail["handoffs"][0]["to_id"] == "ana"
    # A later, worse delay for the same customer joins the open case and raises its severity.
    world.send(arrival(2, "C-1", 800, day=22))
    again = world.case_of("C-1")
    assert again["case"]["id"] == case["id"]
    assert len(again["incidents"]) == 2
    assert again["case"]["severity"] == 4
    assert count(world.db, "cases") == 1


def test_a_case_goes_through_the_five_steps_and_a_grant_is_one_entry_however_often_it_is_sent(world: World) -> None:
    world.send(profile("C-1"), booking(1, "C-1", 2500.0), arrival(1, "C-1", 420), arrival(2, "C-1", 420, day=22))
    detail = world.case_of("C-1")
    case_id = detail["case"]["id"]
    unpaid = f"incident-{detail['incidents'][1]['id']}"
    ana = world.as_("ana")
    client = world.client
    assert client.post(f"/v1/cases/{case_id}/acknowledge", headers=ana).status_code == 200
    assert (
        client.put(f"/v1/cases/{case_id}/draft", json={"text": "We are sorry about AA1."}, headers=ana).status_code
        == 200
    )
    sent = client.post(f"/v1/cases/{case_id}/steps/empathise/complete", json={"channel": "email"}, headers=ana)
    assert sent.status_code == 200, sent.text
    assert sent.json()["case"]["first_contact_at"] is not None
    assert sent.json()["steps"][0]["outcome"]["text"] == "We are sorry about AA1."

    proposal = client.get(f"/v1/cases/{case_id}/proposal", headers=ana).json()
    assert (proposal["kind"], Decimal(proposal["amount"])) == ("miles", Decimal(6000))  # gold, 7 hours late
    assert proposal["within_your_authority"] is True
    body = {"kind": "miles", "amount": "6000"}
    first = client.post(f"/v1/cases/{case_id}/remedies", json=body, headers=ana)
    assert first.status_code == 201, first.text
    assert first.json()["policy"] == "air-long-delay-frequent-flyer"
    assert first.json()["granted_by"] == "ana"
    repeat = client.post(f"/v1/cases/{case_id}/remedies", json=body, headers=ana)
    assert repeat.status_code == 200
    assert repeat.json()["id"] == first.json()["id"]
    other = client.post(f"/v1/cases/{case_id}/remedies", json={"kind": "miles", "amount": "5000"}, headers=ana)
    assert other.status_code == 409  # the same slot, another remedy: one slot pays once
    assert count(world.db, "ledger") == 1

    resolved = client.post(f"/v1/cases/{case_id}/resolve", json={"resolution": "6000 miles"}, headers=ana).json()
    assert resolved["case"]["status"] == "resolved"
    assert all(step["completed_at"] for step in resolved["steps"][:3])
    assert resolved["steps"][3]["due_at"] is not None  # the thank-you is due from the resolution
    done = client.post(
        f"/v1/cases/{case_id}/steps/extend_experience/complete", json={"what": "invitation"}, headers=ana
    )
    assert done.status_code == 200
    closed = client.post(f"/v1/cases/{case_id}/close", headers=ana).json()
    assert closed["case"]["status"] == "closed"
    assert (
        client.post(
            f"/v1/cases/{case_id}/remedies", json={"kind": "miles", "amount": "1", "slot": unpaid}, headers=ana
        ).status_code
        == 409
    )  # closed
    reopened = client.post(f"/v1/cases/{case_id}/reopen", json={"reason": "still unhappy"}, headers=ana).json()
    assert reopened["case"]["status"] == "open"
    assert reopened["case"]["reopened"] == 1
    assert count(world.db, "cases") == 1
    with world.db.unit_of_work() as uow:
        actions = [row.action for row in uow.execute(sa.select(tables.audit_log).order_by(tables.audit_log.c.id))]
    assert actions[:5] == [
        "case.opened",
        "case.incident_joined",
        "case.assigned",
        "case.incident_joined",
        "case.acknowledged",
    ]
    assert "remedy.granted" in actions
    assert "case.reopened" in actions


def test_above_the_limit_is_403_naming_it_and_a_manager_approves(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 800), arrival(2, "C-1", 800, day=22))
    detail = world.case_of("C-1")
    case_id = detail["case"]["id"]
    first_incident, second_incident = (i["id"] for i in detail["incidents"])
    body = {"kind": "miles", "amount": "10000"}
    refused = world.client.post(f"/v1/cases/{case_id}/remedies", json=body, headers=world.as_("ana"))
    assert refused.status_code == 403
    assert "6000" in refused.json()["reason"]
    assert "per grant" in refused.json()["reason"]
    assert Decimal(refused.json()["limit"]) == 6000
    assert refused.json()["approval"]["path"] == f"/v1/cases/{case_id}/approvals"
    assert count(world.db, "ledger") == 0

    asked = world.client.post(f"/v1/cases/{case_id}/approvals", json=body, headers=world.as_("ana"))
    assert asked.status_code == 202
    approval_id = asked.json()["id"]
    assert world.client.post(f"/v1/cases/{case_id}/approvals", json=body, headers=world.as_("ana")).status_code == 200
    queue = world.client.get("/v1/approvals", headers=world.as_("boss")).json()
    assert [a["id"] for a in queue] == [approval_id]
    self_approved = world.client.post(
        f"/v1/approvals/{approval_id}/approve", json={"reason": "mine"}, headers=world.as_("ana")
    )
    assert self_approved.status_code == 403
    unexplained = world.client.post(f"/v1/approvals/{approval_id}/approve", json={}, headers=world.as_("boss"))
    assert unexplained.status_code == 422
    approved = world.client.post(
        f"/v1/approvals/{approval_id}/approve", json={"reason": "ok"}, headers=world.as_("boss")
    )
    assert approved.status_code == 201, approved.text
    assert approved.json()["granted_by"] == "boss"
    assert approved.json()["approval_id"] == approval_id
    assert approved.json()["slot"] == f"incident-{first_incident}"
    again = world.client.post(f"/v1/approvals/{approval_id}/approve", json={"reason": "ok"}, headers=world.as_("boss"))
    assert again.status_code == 409
    assert count(world.db, "ledger") == 1
    denied = world.client.post(
        f"/v1/cases/{case_id}/approvals", json={**body, "slot": f"incident-{second_incident}"}, headers=world.as_("ana")
    ).json()
    no_reason = world.client.post(f"/v1/approvals/{denied['id']}/deny", json={}, headers=world.as_("boss"))
    assert no_reason.status_code == 422
    refused_again = world.client.post(
        f"/v1/approvals/{denied['id']}/deny", json={"reason": "one remedy is enough"}, headers=world.as_("boss")
    )
    assert refused_again.json()["status"] == "denied"
    assert count(world.db, "ledger") == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"kind": "miles", "amount": "-5"}, 422, "amount"),
        ({"kind": "gold-bars", "amount": "1"}, 422, "kind"),
        ({"kind": "miles", "amount": "1.234"}, 422, "amount"),
        ({"kind": "apology", "amount": "10"}, 422, "amount"),
        ({"kind": "miles", "amount": "100", "granted_by": "boss"}, 422, "granted_by"),
        ({"kind": "miles", "amount": "100", "role": "admin"}, 422, "role"),
        ({"kind": "miles", "amount": "100", "slot": "incident-999"}, 422, "slot"),
        ({"kind": "miles", "amount": "100", "slot": "case"}, 422, "slot"),  # the case has an incident
        ({"kind": "miles", "amount": "100", "slot": "anything"}, 422, "slot"),
        ({"kind": "miles", "amount": "100", "slot": "incident-\u00b2"}, 422, "slot"),
        ({"kind": "miles", "amount": "1E+30"}, 422, "amount"),
    ],
)
def test_bad_or_forged_grants_are_refused_and_write_nothing(
    world: World, body: dict[str, object], status: int, field: str
) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    response = world.client.post(f"/v1/cases/{case_id}/remedies", json=body, headers=world.as_("ana"))
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert count(world.db, "ledger") == 0


def test_an_integration_key_cannot_grant_and_nobody_reads_a_case_they_should_not(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    body = {"kind": "miles", "amount": "100"}
    by_integration = world.client.post(f"/v1/cases/{case_id}/remedies", json=body, headers=world.as_("reader"))
    assert by_integration.status_code == 403
    assert world.client.get(f"/v1/cases/{case_id}", headers=world.as_("bob")).status_code == 404  # other team
    assert world.client.get(f"/v1/cases/{case_id}", headers=world.as_("reader")).status_code == 200
    assert world.client.get("/v1/cases", headers=world.as_("bob")).json()["cases"] == []
    assert world.client.get(f"/v1/cases/{case_id}", headers=world.as_("integration")).status_code == 403
    assert world.client.post(f"/v1/cases/{case_id}/remedies", json=body, headers=world.as_("bob")).status_code == 404
    # A deactivated staff member's key stops working at once.
    staff_change = world.client.patch("/v1/staff/ana", json={"active": False}, headers=world.as_("boss"))
    assert staff_change.status_code == 403  # a manager is not an admin
    with world.db.unit_of_work() as uow:
        uow.execute(sa.update(tables.staff).where(tables.staff.c.id == "ana").values(active=False))
        uow.commit()
    assert world.client.get(f"/v1/cases/{case_id}", headers=world.as_("ana")).status_code == 401
    assert count(world.db, "ledger") == 0


def test_a_staff_key_expires_and_a_role_with_a_second_step_gets_one_only_from_the_console(db: Database) -> None:
    root = staff_key(db, "root", Role.ADMIN, None)
    with db.unit_of_work() as uow:
        add_staff(uow, "ana", name="Ana", role=Role.AGENT, team="air", now=NOW)
        add_staff(uow, "mia", name="Mia", role=Role.MANAGER, team=None, now=NOW)
        uow.commit()
    settings = settings_for(db, staff_key_lifetime="7d", console_second_factor_roles=("manager", "admin"))
    with TestClient(create_app(settings, db)) as client:
        as_root = {"Authorization": f"Bearer {root}"}
        before = datetime.now(UTC)
        made = client.post("/v1/staff/ana/keys", headers=as_root)
        assert made.status_code == 201
        expires_at = datetime.fromisoformat(made.json()["expires_at"])
        assert before + timedelta(days=7) <= expires_at <= datetime.now(UTC) + timedelta(days=7)
        ana = made.json()["key"]
        assert client.get("/v1/staff", headers={"Authorization": f"Bearer {ana}"}).status_code == 200
        refused = client.post("/v1/staff/mia/keys", headers=as_root)
        assert refused.status_code == 403
        assert "account page" in refused.json()["reason"]
        # Time passes: the key stops working when it expires, and says so.
        with db.unit_of_work() as uow:
            keys = tables.api_keys
            uow.execute(sa.update(keys).where(keys.c.staff_id == "ana").values(expires_at=before))
            uow.commit()
        expired = client.get("/v1/staff", headers={"Authorization": f"Bearer {ana}"})
        assert expired.status_code == 401
        assert "expired" in expired.json()["reason"]
    with db.unit_of_work() as uow:
        made_for = [row.target for row in uow.execute(sa.select(tables.audit_log.c.target).where(
            tables.audit_log.c.action == "staff.key_created"))]  # fmt: skip
    assert made_for == ["staff:ana"]


def test_a_complaint_joins_the_open_case_links_its_incident_and_records_who_spoke_first(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420, booking_ref="BK1"))
    complaint = {
        "source": "helpdesk",
        "id": "T-1",
        "customer": "C-1",
        "channel": "email",
        "text": "My flight was seven hours late!",
        "reference": "BK1",
        "received_at": "2026-10-20T18:00:00Z",
    }
    first = world.client.post("/v1/complaints", json=complaint, headers=world.as_("integration"))
    assert first.status_code == 201, first.text
    detail = world.case_of("C-1")
    assert first.json()["case_id"] == detail["case"]["id"]
    assert first.json()["incident_id"] == detail["incidents"][0]["id"]
    assert detail["case"]["customer_spoke_first"] is True
    assert world.client.post("/v1/complaints", json=complaint, headers=world.as_("integration")).status_code == 200
    changed = world.client.post("/v1/complaints", json={**complaint, "text": "other"}, headers=world.as_("integration"))
    assert changed.status_code == 409
    assert count(world.db, "complaints") == 1
    # A customer with no open case: the complaint opens a reactive one.
    reactive = world.client.post(
        "/v1/complaints",
        json={**complaint, "id": "T-2", "customer": "C-9", "reference": None},
        headers=world.as_("integration"),
    )
    assert reactive.status_code == 201
    case = world.case_of("C-9")["case"]
    assert (case["origin"], case["playbook"], case["customer_spoke_first"]) == ("reactive", "complaint", True)


def test_an_owner_does_not_pass_a_case_off_and_a_manager_hands_it_over_only_with_a_reason(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    assert world.case_of("C-1")["case"]["owner_id"] == "ana"
    passed_off = world.client.post(
        f"/v1/cases/{case_id}/assign", json={"to": "boss", "reason": "not mine"}, headers=world.as_("ana")
    )
    assert passed_off.status_code == 403
    assert "lead" in passed_off.json()["reason"]
    assert world.case_of("C-1")["case"]["owner_id"] == "ana"
    no_reason = world.client.post(f"/v1/cases/{case_id}/assign", json={"to": "boss"}, headers=world.as_("boss"))
    assert no_reason.status_code == 422
    moved = world.client.post(
        f"/v1/cases/{case_id}/assign", json={"to": "boss", "reason": "needs a manager"}, headers=world.as_("boss")
    )
    assert moved.status_code == 200
    handoffs = moved.json()["handoffs"]
    assert handoffs[-1] == {**handoffs[-1], "from_id": "ana", "to_id": "boss", "reason": "needs a manager"}
    # ana no longer owns it; in her team she still sees it, but cannot work it.
    assert world.client.post(f"/v1/cases/{case_id}/acknowledge", headers=world.as_("ana")).status_code == 403


def test_the_ledger_refuses_updates_and_deletes_and_a_reversal_is_a_new_entry(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    entry = world.client.post(
        f"/v1/cases/{case_id}/remedies", json={"kind": "miles", "amount": "3000"}, headers=world.as_("ana")
    ).json()
    for statement in (
        sa.update(tables.ledger).values(note="edited"),
        sa.delete(tables.ledger),
    ):
        with pytest.raises(Exception, match="append-only"), world.db.unit_of_work() as uow:
            uow.execute(statement)
    boss = Actor("k", _member(world.db, "boss"))
    with world.db.unit_of_work() as uow:
        reversal = remedies.reverse(uow, entry["id"], reason="granted twice by mistake", actor=boss, now=NOW)
        uow.commit()
    assert reversal.amount == Decimal("-3000.00")
    assert reversal.reverses_id == entry["id"]
    with pytest.raises(Conflict), world.db.unit_of_work() as uow:
        remedies.reverse(uow, entry["id"], reason="again", actor=boss, now=NOW)
    with pytest.raises(Forbidden), world.db.unit_of_work() as uow:
        remedies.reverse(uow, entry["id"], reason="again", actor=Actor("k", _member(world.db, "ana")), now=NOW)
    assert count(world.db, "ledger") == 2


def _member(db: Database, staff_id: str) -> Any:
    with db.unit_of_work() as uow:
        return get_staff(uow, staff_id)


def _race(db: Database, work: Any, threads: int) -> list[object]:
    """Run `work(uow)` in `threads` threads at once, each in its own committed unit of work."""
    start = threading.Barrier(threads)
    results: list[object] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        try:
            with db.unit_of_work() as uow:
                outcome: object = work(uow)
                uow.commit()
        except Exception as exc:  # the outcome is what the test checks
            outcome = exc
        with lock:
            results.append(outcome)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return results


def test_twenty_concurrent_grants_of_one_slot_make_exactly_one_entry(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    ana = Actor("k", _member(world.db, "ana"))
    policy = shipped_policy()
    grant = remedies.Grant("miles", Decimal(3000))
    results = _race(
        world.db, lambda uow: remedies.grant(uow, case_id, grant, policy=policy, actor=ana, now=NOW), threads=20
    )
    entries = {r[0].id for r in results if isinstance(r, tuple)}
    assert len(entries) == 1, results
    assert all(isinstance(r, tuple) for r in results), [r for r in results if not isinstance(r, tuple)]
    assert count(world.db, "ledger") == 1


def test_concurrent_grants_never_pass_the_daily_limit_together(world: World) -> None:
    world.send(*(arrival(n, f"C-{n}", 420) for n in range(1, 11)))  # ten cases, all ana's
    case_ids = iter(sorted(world.case_of(f"C-{n}")["case"]["id"] for n in range(1, 11)))
    ana = Actor("k", _member(world.db, "ana"))
    policy = shipped_policy()  # an agent: 25 EUR of credit per grant, 150 per day
    lock = threading.Lock()

    def grant(uow: Any) -> object:
        with lock:
            case_id = next(case_ids)
        return remedies.grant(uow, case_id, remedies.Grant("credit", Decimal(25)), policy=policy, actor=ana, now=NOW)

    results = _race(world.db, grant, threads=10)
    granted = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, remedies.AboveLimit)]
    assert (len(granted), len(refused)) == (6, 4), results
    with world.db.unit_of_work() as uow:
        total = uow.execute(sa.select(sa.func.sum(tables.ledger.c.amount))).scalar_one()
    assert total == Decimal(150)


def test_a_monthly_budget_overrun_is_a_conflict_and_last_months_reversal_frees_nothing(
    world: World, tmp_path: Path
) -> None:
    world.send(*(arrival(n, f"C-{n}", 420) for n in range(1, 5)))
    first, second, third, fourth = sorted(world.case_of(f"C-{n}")["case"]["id"] for n in range(1, 5))
    text = Path(str(shipped_policy().file)).read_text().replace("  credit: 20000", "  credit: 30")
    policy = remedies_policy(tmp_path, text)
    ana = Actor("k", _member(world.db, "ana"))
    boss = Actor("k", _member(world.db, "boss"))
    last_month = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)

    def grant(case_id: int, when: datetime) -> remedies.LedgerEntry:
        with world.db.unit_of_work() as uow:
            entry, _new = remedies.grant(
                uow, case_id, remedies.Grant("credit", Decimal(20)), policy=policy, actor=ana, now=when
            )
            uow.commit()
        return entry

    october = grant(first, last_month)
    grant(second, NOW)  # November: 20 of 30
    with pytest.raises(Conflict, match="monthly budget"), world.db.unit_of_work() as uow:
        remedies.grant(uow, third, remedies.Grant("credit", Decimal(20)), policy=policy, actor=ana, now=NOW)
    with world.db.unit_of_work() as uow:  # reversing October's grant in November frees October's budget
        remedies.reverse(uow, october.id, reason="duplicate", actor=boss, now=NOW)
        uow.commit()
    with pytest.raises(Conflict, match="monthly budget"), world.db.unit_of_work() as uow:
        remedies.grant(uow, fourth, remedies.Grant("credit", Decimal(20)), policy=policy, actor=ana, now=NOW)
    assert count(world.db, "ledger") == 3


def remedies_policy(tmp_path: Path, text: str) -> Any:
    from amends.recover.policy import load_policy

    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def test_the_ledger_lists_exports_and_the_measures_are_computed(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    ana = world.as_("ana")
    world.client.post(f"/v1/cases/{case_id}/acknowledge", headers=ana)
    world.client.post(f"/v1/cases/{case_id}/steps/empathise/complete", json={"text": "Sorry."}, headers=ana)
    world.client.post(f"/v1/cases/{case_id}/remedies", json={"kind": "miles", "amount": "6000"}, headers=ana)
    world.client.post(f"/v1/cases/{case_id}/resolve", json={"resolution": "miles"}, headers=ana)

    assert world.client.get("/v1/ledger", headers=ana).status_code == 403  # an agent does not read the ledger
    listed = world.client.get("/v1/ledger?kind=miles", headers=world.as_("boss")).json()
    assert [(e["case_id"], e["amount"]) for e in listed["entries"]] == [(case_id, "6000.00")]
    exported = world.client.get("/v1/ledger.csv", headers=world.as_("boss"))
    assert exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.strip().splitlines()
    assert lines[0].startswith("id,at,case_id")
    assert len(lines) == 2

    measures = world.client.get(f"/v1/cases/{case_id}/measures", headers=ana).json()
    assert measures["first_contact_resolution"] is True
    assert measures["contacts"] == 1
    assert measures["handoffs"] == 0
    assert Decimal(measures["remedy_cost"]) == Decimal("60.00")  # 6000 miles at 0.01
    assert measures["customer_spoke_first"] is False
    assert world.client.get("/v1/measures", headers=ana).status_code == 403
    summary = world.client.get("/v1/measures", headers=world.as_("boss")).json()
    assert (summary["cases"], summary["proactive"], summary["resolved"]) == (1, 1, 1)
    assert summary["first_contact_resolution_rate"] == 1.0


def test_twenty_concurrent_requests_for_one_grant_make_one_entry(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    body = {"kind": "miles", "amount": "3000"}
    start = threading.Barrier(20)
    statuses: list[tuple[int, int]] = []

    def post() -> None:
        start.wait()
        response = world.client.post(f"/v1/cases/{case_id}/remedies", json=body, headers=world.as_("ana"))
        statuses.append((response.status_code, response.json().get("id", -1)))

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(code for code, _ in statuses) == [200] * 19 + [201]
    assert len({entry for _, entry in statuses}) == 1
    assert count(world.db, "ledger") == 1


def test_the_audit_log_says_who_did_what_from_where_for_managers_only(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    world.client.post(f"/v1/cases/{case_id}/acknowledge", headers=world.as_("ana"))
    assert world.client.get("/v1/audit", headers=world.as_("ana")).status_code == 403
    log = world.client.get(f"/v1/audit?target=case:{case_id}", headers=world.as_("boss")).json()
    assert [(e["action"], e["actor"]) for e in log] == [
        ("case.acknowledged", "staff:ana"),
        ("case.assigned", "system"),
        ("case.incident_joined", "system"),
        ("case.opened", "system"),
    ]
    assert log[0]["origin"] == "testclient"
    assert all(len(entry["hash"]) == 64 for entry in log)  # each entry sealed in the chain
    assert len({entry["hash"] for entry in log}) == len(log)


def test_intake_never_passes_over_an_incident_committed_after_a_later_one(postgres_migrated: Database) -> None:
    """Ids are handed out before commit: intake waits for the writers of incidents in flight. (PostgreSQL
    only: SQLite has one writer at a time, so no incident can be in flight while intake reads.)"""
    db = postgres_migrated
    empty_tables(db)
    from amends.detect.incidents import Candidate
    from amends.detect.runner import store_findings
    from amends.recover.intake import incident_horizon

    finding = Candidate("r", "k-1", "C-1", 2, NOW, {}, None)
    writing = db.unit_of_work()
    uow = writing.__enter__()
    store_findings(uow, [finding], detected_at=NOW, detected_by="stream")  # id 1, not yet committed
    horizons: list[int] = []
    reader = threading.Thread(target=lambda: horizons.append(incident_horizon(db)))
    reader.start()
    reader.join(timeout=1.0)
    assert reader.is_alive()  # it waits for the writer
    uow.commit()
    writing.__exit__(None, None, None)
    reader.join(timeout=10)
    assert horizons == [1]


def test_corrections_and_retries_behave(world: World) -> None:
    """A complaint retried without its time is the same complaint; a reversed slot can be granted anew, once;
    a contact before the case opened, or a ledger export window that ends before it starts, is refused."""
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    complaint = {"source": "helpdesk", "id": "T-9", "customer": "C-1", "channel": "phone", "text": "Late again."}
    first = world.client.post("/v1/complaints", json=complaint, headers=world.as_("integration"))
    retry = world.client.post("/v1/complaints", json=complaint, headers=world.as_("integration"))
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["id"] == first.json()["id"]

    ana, boss = world.as_("ana"), world.as_("boss")
    body = {"kind": "miles", "amount": "3000"}
    entry = world.client.post(f"/v1/cases/{case_id}/remedies", json=body, headers=ana).json()
    reversed_ = world.client.post(f"/v1/ledger/{entry['id']}/reverse", json={"reason": "wrong"}, headers=boss)
    assert reversed_.status_code == 201
    assert Decimal(reversed_.json()["amount"]) == Decimal(-3000)
    corrected = world.client.post(f"/v1/cases/{case_id}/remedies", json={**body, "amount": "2000"}, headers=ana)
    assert corrected.status_code == 201  # the slot paid nothing net: it can be granted anew, once
    assert corrected.json()["entry_key"].endswith("#2")
    repeated = world.client.post(f"/v1/cases/{case_id}/remedies", json={**body, "amount": "2000"}, headers=ana)
    assert (repeated.status_code, repeated.json()["id"]) == (200, corrected.json()["id"])
    assert world.client.post(f"/v1/cases/{case_id}/remedies", json=body, headers=ana).status_code == 409

    early = {"direction": "outbound", "channel": "phone", "at": "2020-01-01T00:00:00Z"}
    assert world.client.post(f"/v1/cases/{case_id}/contacts", json=early, headers=ana).json()["field"] == "at"
    window = {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}
    assert world.client.get("/v1/ledger.csv", params=window, headers=boss).status_code == 422
    assert world.client.get("/v1/approvals", headers=world.as_("integration")).status_code == 403


def test_a_reopened_case_waits_again_for_its_resolution_anchored_steps(world: World) -> None:
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 420))
    case_id = world.case_of("C-1")["case"]["id"]
    ana = world.as_("ana")
    resolved = world.client.post(f"/v1/cases/{case_id}/resolve", json={"resolution": "sorted"}, headers=ana).json()
    assert resolved["steps"][3]["due_at"] is not None
    reopened = world.client.post(f"/v1/cases/{case_id}/reopen", json={"reason": "not sorted"}, headers=ana).json()
    assert reopened["steps"][3]["due_at"] is None  # extend_experience waits for the next resolution
    assert reopened["steps"][0]["due_at"] is not None  # anchored on the opening: unchanged


def test_what_the_review_found_stays_fixed(world: World) -> None:
    """Agents read incidents only through their cases; a team-less agent sees no team-less case but their own;
    a handoff out of one's sight answers 200; the thank-you waits for the resolution; a complaint is a
    contact; closing a case answers its pending approval requests."""
    with world.db.unit_of_work() as uow:
        add_staff(uow, "tom", name="Tom", role=Role.AGENT, team=None, now=NOW)
        world.keys["tom"] = create_staff_key(uow, "tom", now=datetime.now(UTC))[1]
        uow.commit()
    world.send(booking(1, "C-1", 2500.0), arrival(1, "C-1", 800))
    case_id = world.case_of("C-1")["case"]["id"]
    assert world.client.get("/v1/incidents", headers=world.as_("ana")).status_code == 403
    assert world.client.get("/v1/customers/C-1/timeline", headers=world.as_("ana")).status_code == 403
    assert world.client.get("/v1/incidents", headers=world.as_("boss")).status_code == 200

    complaint = {"source": "desk", "id": "T-1", "customer": "C-7", "channel": "email", "text": "Rude staff."}
    reactive = world.client.post("/v1/complaints", json=complaint, headers=world.as_("integration")).json()
    owner = world.case_of("C-7")["case"]["owner_id"]
    for agent in ("ana", "bob", "tom"):
        seen = world.client.get(f"/v1/cases/{reactive['case_id']}", headers=world.as_(agent)).status_code
        team = {"ana": "air", "bob": "shop", "tom": None}
        expected = agent == owner or (team[agent] is not None and team[agent] == team[str(owner)])
        assert seen == (200 if expected else 404), (agent, owner)
    measures = world.client.get(f"/v1/cases/{reactive['case_id']}/measures", headers=world.as_("boss")).json()
    assert (measures["inbound_contacts"], measures["customer_spoke_first"]) == (1, True)

    ana = world.as_("ana")
    early = world.client.post(
        f"/v1/cases/{case_id}/steps/extend_experience/complete", json={"what": "card"}, headers=ana
    )
    assert early.status_code == 409
    asked = world.client.post(f"/v1/cases/{case_id}/approvals", json={"kind": "miles", "amount": "10000"}, headers=ana)
    assert asked.status_code == 202
    moved = world.client.post(
        f"/v1/cases/{case_id}/assign", json={"to": "bob", "reason": "shop order"}, headers=world.as_("boss")
    )
    assert moved.status_code == 200
    assert moved.json()["case"]["owner_id"] == "bob"
    bob = world.as_("bob")
    world.client.post(f"/v1/cases/{case_id}/resolve", json={"resolution": "apologised"}, headers=bob)
    assert world.client.post(f"/v1/cases/{case_id}/close", headers=bob).status_code == 200
    approval = world.client.get(f"/v1/cases/{case_id}", headers=world.as_("boss")).json()["approvals"][0]
    assert (approval["status"], approval["reason"]) == ("denied", "the case was closed")


def test_the_sample_world_flows_into_cases_each_incident_once(db: Database) -> None:
    """A small car-service world through detection and intake: every incident is in exactly one case, one
    open case per customer, each with its rule's playbook; the rework playbook has all five steps."""
    from amends.detect.service import Detection
    from amends.events import Item, ingest_items
    from amends.world import generate_world

    with db.unit_of_work() as uow:
        for n in range(3):
            add_staff(uow, f"advisor-{n}", name=f"Advisor {n}", role=Role.AGENT, team="workshop", now=NOW)
        uow.commit()
    settings = settings_for(db, rule_packs=("car_service",), detect_clock="events", assign_teams={"car-*": "workshop"})
    detection = Detection.from_settings(db, settings)
    world = generate_world("car_service", customers=60, days=60, seed=11)
    ingest_items(db, [Item(envelope) for envelope in world], received_at=NOW, watcher=detection.detector)
    recovery = Recovery.from_settings(db, settings)
    taken = recovery.tick(now=NOW)
    assert taken.opened > 0
    assert recovery.tick(now=NOW).incidents == 0  # nothing is taken twice
    with db.unit_of_work() as uow:
        incidents = uow.execute(sa.select(tables.incidents.c.id, tables.incidents.c.playbook)).all()
        linked = uow.execute(sa.select(tables.case_incidents.c.incident_id, tables.case_incidents.c.case_id))
        links: dict[int, int] = {row.incident_id: row.case_id for row in linked}
        cases = {row.id: row for row in uow.execute(sa.select(tables.cases))}
        steps = uow.execute(
            sa.select(tables.case_steps.c.case_id, tables.case_steps.c.kind).order_by(
                tables.case_steps.c.case_id, tables.case_steps.c.position
            )
        ).all()
    assert len(incidents) == taken.opened + taken.joined
    assert {incident.id for incident in incidents} == set(links)
    open_customers = [case.customer_id for case in cases.values() if case.status == "open"]
    assert len(open_customers) == len(set(open_customers))
    assert {case.owner_id for case in cases.values()} <= {"advisor-0", "advisor-1", "advisor-2"}
    first_incident_playbook: dict[int, str] = {}
    for incident in sorted(incidents, key=lambda row: row.id):
        first_incident_playbook.setdefault(links[incident.id], incident.playbook)
    assert all(cases[case_id].playbook == playbook for case_id, playbook in first_incident_playbook.items())
    kinds: dict[int, list[str]] = {}
    for step in steps:
        kinds.setdefault(step.case_id, []).append(step.kind)
    rework = [case_id for case_id, case in cases.items() if case.playbook == "rework"]
    assert rework, "the world has rework"
    assert kinds[rework[0]] == [
        "empathise",
        "take_ownership",
        "lessen_inconvenience",
        "manage_memory",
        "extend_experience",
    ]


def test_grants_from_two_processes_share_the_daily_limit(db: Database) -> None:
    """Two Database objects on one database stand for two processes: the recovery lock, not a lock of this
    process, keeps their grants within the daily limit."""
    settings = settings_for(db, rule_packs=("airline",), detect_clock="events", detect_allowed_lateness="0s")
    with db.unit_of_work() as uow:
        add_staff(uow, "ana", name="Ana", role=Role.AGENT, now=NOW)
        uow.commit()
    app = create_app(settings, db)
    integration = new_key(db, "integration", [Scope.EVENTS_WRITE])
    with TestClient(app) as client:
        events = [arrival(n, f"C-{n}", 420) for n in range(1, 13)] + [{**arrival(99, "C-0", 0, day=31), "type": "t"}]
        assert client.post("/v1/events", json=events, headers={"Authorization": f"Bearer {integration}"}).is_success
        app.state.recovery.tick()
    with db.unit_of_work() as uow:
        case_ids = iter(sorted(uow.execute(sa.select(tables.cases.c.id)).scalars()))
    other = Database(db.url.render_as_string(hide_password=False))
    ana = Actor("k", _member(db, "ana"))
    policy = shipped_policy()
    lock = threading.Lock()
    start = threading.Barrier(12)
    outcomes: list[object] = []

    def grant(database: Database) -> None:
        with lock:
            case_id = next(case_ids)
        start.wait()
        try:
            with database.unit_of_work() as uow:
                outcome: object = remedies.grant(
                    uow, case_id, remedies.Grant("credit", Decimal(25)), policy=policy, actor=ana, now=NOW
                )
                uow.commit()
        except Exception as exc:  # the outcome is what the test checks
            outcome = exc
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=grant, args=(db if n % 2 else other,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.dispose()
    assert sum(isinstance(o, tuple) for o in outcomes) == 6, outcomes
    assert sum(isinstance(o, remedies.AboveLimit) for o in outcomes) == 6, outcomes
