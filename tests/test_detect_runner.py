"""Detection bound to the database, on SQLite and PostgreSQL: incidents and state are written with the
events that cause them, timers survive a restart (a real kill -9 included), and the stored result equals
the in-memory evaluator's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from amends.detect import (
    Detector,
    Evaluator,
    IncidentFilter,
    RuleSet,
    StoredIncident,
    fold,
    list_incidents,
    parse_rules,
)
from amends.events import Event, append_events, dedup_key
from amends.store import Database, tables
from amends.world import generate_world
from tests.conftest import count_rows

T0 = datetime(2025, 3, 1, tzinfo=UTC)

RULES = """\
rules:
  - id: late-delivery
    kind: absence
    after: order.placed
    expect: order.delivered
    key: data.order_id
    deadline: data.promised_by + 1d
    watch_late_for: 10d
  - id: long-delay
    kind: match
    on: flight.arrived
    where: {data.delay_minutes: {gte: 180}}
  - id: contact-storm
    kind: count
    on: support.contact
    at_least: 3
    within: 7d
  - id: rework
    kind: sequence
    first: service.completed
    then: service.opened
    key: data.vehicle_id
    within: 30d
"""


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


def rules(text: str = RULES) -> RuleSet:
    return parse_rules([(None, text)])


_serial = iter(range(1_000_000))


def ev(kind: str, hours: float, subject: str = "C-1", **data: Any) -> Event:
    return Event(f"e-{next(_serial)}", "https://shop.example", kind, T0 + timedelta(hours=hours), subject, data)


def store(db: Database, detector: Detector | None, events: Sequence[Event], *, commit: bool = True) -> None:
    with db.unit_of_work(writes=True) as uow:
        append_events(uow, events, received_at=T0, watcher=detector)
        if commit:
            uow.commit()


def incidents(db: Database) -> list[StoredIncident]:
    with db.unit_of_work() as uow:
        return list(list_incidents(uow, IncidentFilter(), limit=10_000).incidents)


def by_rule(db: Database) -> dict[str, int]:
    found: dict[str, int] = {}
    for incident in incidents(db):
        found[incident.rule_id] = found.get(incident.rule_id, 0) + 1
    return found


def placed(hours: float, order: str = "O-1", promised_hours: float = 48, subject: str = "C-1") -> Event:
    promised = (T0 + timedelta(hours=promised_hours)).isoformat()
    return ev("order.placed", hours, subject, order_id=order, promised_by=promised)


def test_an_event_that_matches_opens_one_incident_with_its_facts(db: Database) -> None:
    detector = Detector(rules(), clock="events")
    arrived = ev("flight.arrived", 1, "C-7", flight="AA123", delay_minutes=400)
    store(db, detector, [arrived, ev("flight.arrived", 2, delay_minutes=20)])
    store(db, detector, [arrived])  # sent again: a duplicate, not evaluated again

    (incident,) = incidents(db)
    assert (incident.rule_id, incident.customer_id, incident.status) == ("long-delay", "C-7", "open")
    assert incident.key == dedup_key(arrived.source, arrived.id)
    assert incident.failure_at == arrived.time
    assert incident.facts["data"] == {"flight": "AA123", "delay_minutes": 400}
    assert incident.detected_by == "stream"


def test_a_deadline_fires_from_the_sweeper_once_and_a_late_delivery_resolves_it(db: Database) -> None:
    clock = Clock(T0 + timedelta(hours=1))
    detector = Detector(rules(), clock="wall", now=clock)
    store(db, detector, [placed(0)])  # due at promised_by + 1d = T0 + 72h
    clock.now = T0 + timedelta(hours=71)
    assert detector.sweep(db).opened == 0
    assert incidents(db) == []
    clock.now = T0 + timedelta(hours=73)
    assert detector.sweep(db).opened == 1
    assert detector.sweep(db).opened == 0

    (incident,) = incidents(db)
    assert incident.failure_at == T0 + timedelta(hours=72)
    assert incident.facts["deadline"] == "2025-03-04T00:00:00.000000Z"
    clock.now = T0 + timedelta(hours=81)
    store(db, detector, [ev("order.delivered", 80, order_id="O-1")])
    (incident,) = incidents(db)
    assert incident.status == "resolved_late"
    assert incident.resolved_at == T0 + timedelta(hours=80)
    assert incident.resolution is not None
    assert incident.resolution["type"] == "order.delivered"


def test_an_armed_timer_survives_a_new_process_and_fires_exactly_once(db: Database) -> None:
    clock = Clock(T0 + timedelta(hours=11))
    first = Detector(rules(), clock="wall", now=clock)
    store(db, first, [placed(0, "O-1"), placed(0, "O-2")])
    store(db, first, [ev("order.delivered", 10, order_id="O-2")])
    assert count_rows(db, "detect_state") == 2  # two expectations: one open, one satisfied
    del first  # the process is gone; only what was committed remains

    clock.now = T0 + timedelta(hours=100)
    for _ in range(3):  # three new processes in turn
        Detector(rules(), clock="wall", now=clock).sweep(db)
    (incident,) = incidents(db)
    assert incident.key == "O-1"
    assert count_rows(db, "detect_state") == 1  # O-1 is watched for a late delivery; O-2 is forgotten


def test_a_rolled_back_transaction_leaves_no_trace_and_the_detector_recovers(db: Database) -> None:
    detector = Detector(rules(), clock="events")
    contacts = [ev("support.contact", hour) for hour in (1, 2)]
    store(db, detector, contacts[:1])
    store(db, detector, contacts[1:], commit=False)  # rolled back: the evaluator saw it, the store did not
    store(db, detector, [ev("support.contact", 3)])
    assert incidents(db) == []  # only two contacts are stored
    store(db, detector, contacts[1:])  # the rolled-back one comes again
    store(db, detector, [ev("flight.arrived", 10, delay_minutes=1)])  # the watermark passes the last contact
    assert by_rule(db) == {"contact-storm": 1}


def test_two_processes_share_one_state(db: Database) -> None:
    one, other = Detector(rules(), clock="events"), Detector(rules(), clock="events")
    store(db, one, [ev("support.contact", 1)])
    store(db, other, [ev("support.contact", 2)])
    store(db, one, [ev("support.contact", 3), ev("flight.arrived", 10, delay_minutes=1)])
    assert by_rule(db) == {"contact-storm": 1}  # `one` saw the contact `other` stored


def test_events_stored_without_a_detector_are_caught_up_and_history_before_it_is_left_to_backfill(
    db: Database,
) -> None:
    store(db, None, [ev("flight.arrived", 1, delay_minutes=500)])  # before any detector: history
    detector = Detector(rules(), clock="events")
    store(db, detector, [ev("flight.arrived", 2, delay_minutes=10)])
    store(db, None, [ev("flight.arrived", 3, "C-2", delay_minutes=600)])  # behind the detector's back
    store(db, detector, [ev("flight.arrived", 4, delay_minutes=10)])
    assert [incident.customer_id for incident in incidents(db)] == ["C-2"]


def test_a_removed_rule_drops_its_state_and_the_others_keep_theirs(db: Database) -> None:
    detector = Detector(rules(), clock="events")
    store(db, detector, [placed(0), ev("support.contact", 1), ev("support.contact", 2)])
    kinds = lambda: {row.rule_id for row in _state(db)}  # noqa: E731
    assert kinds() == {"late-delivery", "contact-storm"}
    without_absence = rules(RULES.replace("  - id: late-delivery", "  - id: late-delivery\n    enabled: false"))
    detector.use_rules(without_absence)
    store(db, detector, [ev("support.contact", 3), ev("flight.arrived", 10, delay_minutes=1)])
    assert kinds() == {"contact-storm"}
    assert by_rule(db) == {"contact-storm": 1}


def _state(db: Database) -> list[Any]:
    with db.unit_of_work() as uow:
        return list(uow.execute(sa.select(tables.detect_state)))


@pytest.fixture
def shop_world() -> list[Event]:
    from amends.events import validate_event

    events = []
    for envelope in generate_world("shop", customers=150, days=90, seed=11, late_share=0.02, duplicate_share=0.01):
        event = validate_event(envelope)
        assert isinstance(event, Event)
        events.append(event)
    return events


def test_stored_incidents_equal_the_in_memory_evaluators_across_restarts(db: Database, shop_world: list[Event]) -> None:
    from amends.detect import load_rules
    from amends.detect.packs import pack_paths

    rule_set = load_rules(pack_paths(["shop"]))
    lateness = timedelta(hours=3)
    expected = Evaluator(rule_set, lateness=lateness)
    seen: set[str] = set()
    findings = []
    detector = Detector(rule_set, lateness=lateness, clock="events")
    for number, start in enumerate(range(0, len(shop_world), 500)):
        batch = shop_world[start : start + 500]
        fresh = [e for e in batch if dedup_key(e.source, e.id) not in seen and not seen.add(dedup_key(e.source, e.id))]
        findings += expected.observe(fresh) + expected.advance()
        if number % 3 == 2:
            detector = Detector(rule_set, lateness=lateness, clock="events")  # a restart
        store(db, detector, batch)
    want = {(i.rule_id, i.key, i.status, i.failure_at) for i in fold(findings).values()}
    got = {(i.rule_id, i.key, i.status, i.failure_at) for i in incidents(db)}
    assert len(want) > 20
    assert got == want


_KILLED_CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime, timedelta
    from amends.detect import Detector, parse_rules
    from amends.events import Event, append_events
    from amends.store import Database

    db = Database(sys.argv[1])
    rules = parse_rules([(None, sys.argv[2])])
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    detector = Detector(rules, clock="wall", now=lambda: t0)
    event = Event("k-1", "https://shop.example", "order.placed", t0, "C-9",
                  {"order_id": "O-9", "promised_by": (t0 + timedelta(hours=48)).isoformat()})
    with db.unit_of_work(writes=True) as uow:
        append_events(uow, [event], received_at=t0, watcher=detector)
        uow.commit()
    print("armed", flush=True)
    time.sleep(600)
    """
)


def test_a_process_killed_between_arming_and_firing_fires_once_after_restart(db: Database) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, db.url.render_as_string(hide_password=False), RULES],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "armed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert incidents(db) == []

    clock = Clock(T0 + timedelta(hours=73))
    restarted = Detector(rules(), clock="wall", now=clock)
    assert restarted.sweep(db).opened == 1
    assert restarted.sweep(db).opened == 0
    assert Detector(rules(), clock="wall", now=clock).sweep(db).opened == 0
    (incident,) = incidents(db)
    assert (incident.key, incident.customer_id) == ("O-9", "C-9")


def test_threads_storing_at_once_and_a_sweeper_reloading_rules_lose_and_double_nothing(db: Database) -> None:
    import threading

    # Customers' events interleave far apart in time: with enough allowed lateness none is late, so the
    # result cannot depend on the order the threads happen to store in.
    detector = Detector(rules(), clock="events", lateness=timedelta(hours=1_000))
    errors: list[BaseException] = []

    def customer_contacts(customer: int) -> None:
        try:
            for hour in range(6):  # three contacts, then three more a week later: one episode
                store(db, detector, [ev("support.contact", hour * 50 if hour >= 3 else hour, f"C-{customer}")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def sweeper(stop: threading.Event) -> None:
        while not stop.is_set():
            detector.use_rules(rules())  # the same rules again: state must survive a reload
            detector.sweep(db)

    stop = threading.Event()
    sweeping = threading.Thread(target=sweeper, args=(stop,))
    sweeping.start()
    workers = [threading.Thread(target=customer_contacts, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    sweeping.join()
    store(db, detector, [ev("flight.arrived", 10_000, delay_minutes=1)])  # the watermark passes everything
    assert errors == []
    assert by_rule(db) == {"contact-storm": 6}
