"""A customer's data on request, on both engines, over a sample world run through the product: the export holds
everything about them; erasure leaves nothing that names them or quotes them anywhere, keeps the ledger and the
counts whole under a pseudonym, and keeps the append-only tables closed to every other change."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.access import Scope
from amends.config import Settings
from amends.detect import Detector, parse_rules
from amends.errors import InvalidInput, NotFound
from amends.events import Event, append_events
from amends.outreach.contact import opt_out
from amends.outreach.service import Outreach
from amends.privacy import ERASED, FORGOTTEN_PREFIX, export_customer, forget_customer
from amends.recover import cases as work
from amends.recover import remedies
from amends.recover.actors import SYSTEM, Actor
from amends.recover.audit import check_chain
from amends.recover.roles import Role
from amends.recover.service import Recovery
from amends.recover.staff import add_staff, get_staff
from amends.simulation import simulate, simulation_settings
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import new_key, settings_for

START = datetime(2026, 1, 5, tzinfo=UTC)


def _world(db: Database, tmp_path: Path) -> Settings:
    settings = simulation_settings(
        settings_for(db), business="shop", outbox_file=tmp_path / "outbox.jsonl", holdout_share=0.2
    )
    simulate(db, settings, business="shop", customers=120, days=45, seed=3, true_effect=0.3, start=START)
    return settings


_CONTACTS = """\
rules:
  - id: contact-storm
    kind: count
    on: support.contact
    at_least: 2
    within: 7d
"""


def _named_by_staff_and_rules(db: Database, settings: Settings, customer: str) -> list[str]:
    """What the sample world leaves out, each naming the customer: an incident of a count rule keyed by them (its
    key `<id>@<instant>`), and a complaint's case worked by hand, its texts naming them: the apology as sent and a
    note on it, an approval denied, no remedy, the resolution, a reopening and a handover, each with its reason; and
    an opt-out. Returns those texts."""
    contacts = Detector(parse_rules([(None, _CONTACTS)]), clock="events", name="contacts")
    at = START + timedelta(days=46)
    with db.unit_of_work(writes=True) as uow:
        append_events(uow, [Event(f"contact-{n}", "https://shop.example", "support.contact", at + timedelta(hours=n),
                                  customer, {}) for n in range(3)], received_at=at, watcher=contacts)  # fmt: skip
        uow.commit()
    texts = [f"Dear {customer}, we are sorry.", f"Rang {customer} first.", f"Denied: {customer} had one.",
             f"{customer} wanted nothing more.", f"Settled with {customer}.", f"{customer} wrote again.",
             f"{customer} asked for a manager."]  # fmt: skip
    apology, note, denial, no_remedy, resolution, reopening, handover = texts
    recovery = Recovery.from_settings(db, settings)
    outreach = Outreach.from_settings(settings, recovery.policy)
    with db.unit_of_work(writes=True) as uow:
        desk = get_staff(uow, "desk")
        boss = add_staff(uow, "boss", name="Boss", role=Role.MANAGER, team=None, now=at)
        as_desk, as_boss = (Actor(None, member, member.scopes, None) for member in (desk, boss))
        complaint, _new = recovery.intake.file_complaint(
            uow, source="phone", external_id="call-1", customer_id=customer, channel="email",
            text="Still waiting.", reference=None, received_at=None, actor=as_desk, now=at,
        )  # fmt: skip
        case = work.load_case(uow, complaint.case_id)
        playbook = recovery.playbooks.get(case.playbook)
        work.acknowledge(uow, case.id, actor=as_desk, now=at)
        outreach.apologise(uow, case.id, actor=as_desk, now=at, text=apology, note=note)
        proposal = remedies.propose(uow, case.id, policy=recovery.policy, actor=as_desk, now=at)
        grant = remedies.Grant(proposal.kind, proposal.amount, note=None)
        approval, _new = remedies.request_approval(uow, case.id, grant, policy=recovery.policy, actor=as_desk, now=at)
        remedies.deny(uow, approval.id, reason=denial, actor=as_boss, now=at)
        remedies.no_remedy(uow, case.id, reason=no_remedy, actor=as_desk, now=at)
        work.resolve_case(uow, case.id, resolution=resolution, actor=as_desk, now=at, playbook=playbook)
        work.reopen_case(uow, case.id, reason=reopening, actor=as_desk, now=at, playbook=playbook)
        work.set_owner(uow, work.load_case(uow, case.id), boss, reason=handover, by=as_desk, now=at)
        opt_out(uow, customer, source="staff", actor=as_boss, now=at)  # and then wanted no more messages
        uow.commit()
    return texts


def _busiest(db: Database) -> str:
    """A customer with a granted remedy, a sent message and a case: the one with the most of these rows."""
    with db.unit_of_work() as uow:
        granted = Counter(uow.execute(sa.select(tables.ledger.c.customer_id)).scalars())
        written = Counter(uow.execute(sa.select(tables.messages.c.customer_id)).scalars())
    both = [c for c in granted if written[c]]
    assert both, "the world gave nobody both a remedy and a message"
    return max(both, key=lambda c: granted[c] + written[c])


def _mentions(db: Database, needle: str) -> dict[str, int]:
    """Every column of every table (the audit log aside) whose text holds `needle`, with how many rows."""
    found: dict[str, int] = {}
    with db.unit_of_work() as uow:
        for table in tables.metadata.sorted_tables:
            if table.name == "audit_log":
                continue
            for column in table.columns:
                if isinstance(column.type, sa.Integer | sa.Float | sa.Boolean | sa.DateTime | sa.Numeric):
                    continue
                count = uow.execute(
                    sa.select(sa.func.count()).where(sa.cast(column, sa.Text).contains(needle))
                ).scalar_one()
                if count:
                    found[f"{table.name}.{column.name}"] = count
    return found


def _audit_mentions(db: Database, needle: str) -> list[tuple[str, str]]:
    """The audit entries that hold `needle`, as (action, column) pairs."""
    log = tables.audit_log
    found: list[tuple[str, str]] = []
    with db.unit_of_work() as uow:
        for column in (log.c.actor, log.c.target, log.c.origin, log.c.details):
            actions = uow.execute(sa.select(log.c.action).where(sa.cast(column, sa.Text).contains(needle))).scalars()
            found += [(action, column.name) for action in actions]
    return found


def _totals(db: Database) -> dict[str, Any]:
    with db.unit_of_work() as uow:
        ledger = tables.ledger
        return {
            "ledger": sorted(
                uow.execute(
                    sa.select(ledger.c.kind, sa.func.count(), sa.func.sum(ledger.c.cash_value)).group_by(ledger.c.kind)
                ).all()
            ),
            **{
                name: uow.execute(sa.select(sa.func.count()).select_from(getattr(tables, name))).scalar_one()
                for name in ("events", "incidents", "cases", "messages", "holdout_draws", "customers", "feedback")
            },
        }


def test_the_export_holds_everything_and_erasure_leaves_nothing_that_names_or_quotes_the_customer(
    db: Database, tmp_path: Path
) -> None:
    settings = _world(db, tmp_path)
    customer = _busiest(db)
    # They also wrote to the company, quoting their own address.
    with TestClient(create_app(settings_for(db), db)) as client:
        key = new_key(db, "mailbox", [Scope.FEEDBACK_WRITE])
        posted = client.post(
            "/v1/feedback",
            json={"source": "mailbox", "id": "m-1", "channel": "email", "customer": customer, "author": "Robin Vale",
                  "text": "The parcel came a week late. Write to me at robin.vale@example.net please."},
            headers={"Authorization": f"Bearer {key}"},
        )  # fmt: skip
        assert posted.status_code == 201, posted.text
    written = _named_by_staff_and_rules(db, settings, customer)
    with db.unit_of_work() as uow:
        addresses = set(
            uow.execute(sa.select(tables.messages.c.recipient).where(tables.messages.c.customer_id == customer))
            .scalars()
        )  # fmt: skip
        exported = export_customer(uow, customer, now=START + timedelta(days=50))
        events = uow.execute(
            sa.select(sa.func.count()).where(tables.events.c.subject == customer).select_from(tables.events)
        ).scalar_one()
    assert len(exported["events"]) == events > 0
    assert any(i["key"].startswith(f"{customer}@") for i in exported["incidents"])  # the count rule's
    assert {m["recipient"] for m in exported["messages"]} == addresses
    assert exported["remedies"]
    assert exported["cases"]
    assert exported["case_steps"]
    assert [f["text"] for f in exported["feedback"]] == [
        "The parcel came a week late. Write to me at robin.vale@example.net please."
    ]
    orjson.dumps(exported)  # JSON as it stands
    before = _totals(db)

    with db.unit_of_work(writes=True) as uow:
        forgotten = forget_customer(uow, customer, SYSTEM, now=START + timedelta(days=50), via="test")
        uow.commit()

    assert forgotten.pseudonym.startswith(FORGOTTEN_PREFIX)
    assert customer not in forgotten.pseudonym
    assert _mentions(db, customer) == {}
    for secret in (*addresses, "robin.vale@example.net", "Robin Vale", "a week late", *written):
        assert _mentions(db, secret) == {}, secret
        assert _audit_mentions(db, secret) == [], secret  # the audit log keeps no free text
    # The audit log names them only as the target of their consent decision, which it must keep.
    assert _audit_mentions(db, customer) == [("customer.opted_out", "target")]
    assert _totals(db) == before  # the ledger adds up as before; every count is the same
    with db.unit_of_work() as uow:
        kept = export_customer(uow, forgotten.pseudonym, now=START + timedelta(days=50))
        open_cases = uow.execute(
            sa.select(sa.func.count()).where(
                tables.cases.c.customer_id == forgotten.pseudonym, tables.cases.c.status != "closed"
            )
        ).scalar_one()
        pending = uow.execute(
            sa.select(sa.func.count()).where(
                tables.messages.c.customer_id == forgotten.pseudonym, tables.messages.c.status == "pending"
            )
        ).scalar_one()
        chain = check_chain(uow)
        [entry] = uow.execute(
            sa.select(tables.audit_log).where(tables.audit_log.c.action == "customer.forgotten")
        ).all()
    assert len(kept["remedies"]) == len(exported["remedies"])
    assert [r["cash_value"] for r in kept["remedies"]] == [r["cash_value"] for r in exported["remedies"]]
    assert all(r["note"] is None for r in kept["remedies"])
    assert len(kept["events"]) == events
    assert sorted(i["key"].split("@")[0] for i in kept["incidents"] if "@" in i["key"]) == [
        forgotten.pseudonym for i in exported["incidents"] if i["key"].startswith(f"{customer}@")
    ]
    assert all(e["data"] == {} for e in kept["events"])
    assert [f["text"] for f in kept["feedback"]] == [ERASED]
    assert kept["feedback"][0]["sentiment"] == exported["feedback"][0]["sentiment"]  # the measures keep the label
    assert open_cases == 0
    assert pending == 0
    assert chain.intact
    assert entry.target == f"customer:{forgotten.pseudonym}"
    assert entry.details["via"] == "test"

    with db.unit_of_work(writes=True) as uow, pytest.raises(NotFound):
        forget_customer(uow, customer, SYSTEM, now=START, via="test")  # no such customer any more
    with db.unit_of_work(writes=True) as uow, pytest.raises(InvalidInput, match="forgotten already"):
        forget_customer(uow, forgotten.pseudonym, SYSTEM, now=START, via="test")


def test_the_append_only_tables_take_erasure_and_nothing_else(db: Database, tmp_path: Path) -> None:
    _world(db, tmp_path)
    customer = _busiest(db)
    ledger, draws = tables.ledger, tables.holdout_draws
    changes: list[tuple[sa.Table, dict[str, Any]]] = [
        (ledger, {"amount": 1}),
        (ledger, {"customer_id": "someone-else"}),
        (ledger, {"customer_id": "forgotten:00", "amount": 1}),
        (ledger, {"customer_id": "forgotten:00", "note": "kept"}),
        (draws, {"customer_id": "someone-else"}),
        (draws, {"customer_id": "forgotten:00", "draw": 0.5}),
    ]
    for table, values in changes:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.engine.begin() as connection:
            connection.execute(sa.update(table).where(table.c.customer_id == customer).values(**values))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.engine.begin() as connection:
        connection.execute(sa.delete(ledger).where(ledger.c.customer_id == customer))
    with db.unit_of_work(writes=True) as uow:
        pseudonym = forget_customer(uow, customer, SYSTEM, now=START, via="test").pseudonym
        uow.commit()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.engine.begin() as connection:  # fixed again
        connection.execute(
            sa.update(ledger).where(ledger.c.customer_id == pseudonym).values(customer_id="forgotten:11")
        )


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {"AMENDS_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "amends.cli", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_commands_export_forget_and_refuse_an_unknown_customer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'amends.db'}"
    assert _cli("init", url=url).returncode == 0
    db = Database(url)
    try:
        _world(db, tmp_path)
        customer = _busiest(db)
    finally:
        db.dispose()
    out = tmp_path / "export.json"
    done = _cli("customers", "export", customer, "--out", str(out), url=url)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(out.read_bytes())["customer"] == customer

    refused = _cli("customers", "forget", customer, url=url)  # asks first; no answer is no
    assert refused.returncode == 1
    assert orjson.loads(_cli("customers", "export", customer, url=url).stdout)["customer"] == customer

    done = _cli("customers", "forget", customer, "--yes", url=url)
    assert done.returncode == 0, done.stderr
    assert f"Forgot {customer}" in done.stderr
    assert FORGOTTEN_PREFIX in done.stderr
    unknown = _cli("customers", "export", customer, url=url)
    assert unknown.returncode == 1
    assert f"customer {customer!r} is not known" in unknown.stderr
    assert _cli("customers", "export", " ", url=url).returncode == 2


_WAITING_RULE = """\
rules:
  - id: late-delivery
    kind: absence
    after: order.placed
    expect: order.delivered
    key: data.order_id
    deadline: data.promised_by + 1d
"""


@dataclass
class _Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def test_a_running_detector_forgets_what_it_held_in_memory(db: Database) -> None:
    clock = _Clock(START + timedelta(hours=1))
    rules = parse_rules([(None, _WAITING_RULE)])
    main = Detector(rules, now=clock)
    partition = Detector(rules, now=clock, name="partition.0/1", owns=lambda subject: True)  # broker mode's kind
    promised = (START + timedelta(days=2)).isoformat()
    for number, detector in enumerate((main, partition)):
        placed = Event(f"e-{number}", "https://shop.example", "order.placed", START, "C-9",
                       {"order_id": f"O-{number}", "promised_by": promised})  # fmt: skip
        with db.unit_of_work(writes=True) as uow:  # each holds an expectation, due in three days
            append_events(uow, [placed], received_at=START, watcher=detector)
            uow.commit()

    with db.unit_of_work(writes=True) as uow:  # as another process would
        forget_customer(uow, "C-9", SYSTEM, now=START + timedelta(hours=2), via="test")
        uow.commit()
    clock.now = START + timedelta(days=10)
    main.sweep(db)
    partition.sweep(db)

    assert _mentions(db, "C-9") == {}
    with db.unit_of_work() as uow:
        assert uow.execute(sa.select(tables.incidents.c.customer_id)).scalars().all() == []
