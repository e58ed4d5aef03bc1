"""The streaming evaluator on hand-made histories: what each kind of rule finds, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from amends.detect import Candidate, Evaluator, LateResolution, fold, parse_rules
from amends.events import Event

T0 = datetime(2025, 3, 1, tzinfo=UTC)
_ids = count()

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
    severity: {by: data.delay_minutes, steps: [[180, 2], [360, 3]]}
    cooldown: 1d
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


def ev(kind: str, hours: float, subject: str = "C-1", **data: Any) -> Event:
    return Event(
        id=f"e-{next(_ids)}",
        source="https://example.com",
        type=kind,
        time=T0 + timedelta(hours=hours),
        subject=subject,
        data=data,
    )


def run(*events: Event, until_hours: float | None = None) -> tuple[Evaluator, list[Any]]:
    evaluator = Evaluator(parse_rules([(None, RULES)]))
    findings = evaluator.observe(list(events))
    findings += evaluator.advance(None if until_hours is None else T0 + timedelta(hours=until_hours))
    return evaluator, findings


def promised(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def test_absence_fires_once_the_deadline_has_passed_and_not_before() -> None:
    placed = ev("order.placed", 0, order_id="O-1", promised_by=promised(48))

    _, before = run(placed, until_hours=72)  # deadline: 48 h + 1 d = 72 h; not passed yet
    evaluator, after = run(placed, until_hours=72.01)

    assert before == []
    assert [(f.rule_id, f.key, f.failure_at) for f in after] == [("late-delivery", "O-1", T0 + timedelta(hours=72))]
    assert after[0].facts["deadline"] == "2025-03-04T00:00:00.000000Z"
    assert evaluator.expectations[("late-delivery", "O-1")].status == "fired"


def test_the_expected_event_in_time_stops_the_clock_and_a_late_one_resolves_the_incident() -> None:
    on_time = [
        ev("order.placed", 0, order_id="O-1", promised_by=promised(48)),
        ev("order.delivered", 72, order_id="O-1"),
    ]
    evaluator, findings = run(*on_time, until_hours=500)
    assert findings == []
    assert evaluator.expectations == {}  # forgotten after the deadline

    late = [ev("order.placed", 0, order_id="O-2", promised_by=promised(48)), ev("order.delivered", 80, order_id="O-2")]
    evaluator, findings = run(*late, until_hours=500)
    assert [type(f) for f in findings] == [Candidate, LateResolution]
    incident = fold(findings)[findings[0].incident_key]
    assert (incident.status, incident.resolved_at) == ("resolved_late", T0 + timedelta(hours=80))


def test_a_start_event_without_its_key_or_deadline_is_skipped_and_counted() -> None:
    evaluator, findings = run(
        ev("order.placed", 0, promised_by=promised(1)), ev("order.placed", 0, order_id="O-9"), until_hours=1
    )
    assert findings == []
    assert evaluator.skipped["late-delivery"] == 2


def test_match_with_stepped_severity_and_a_cooldown_per_customer() -> None:
    _, findings = run(
        ev("flight.arrived", 0, delay_minutes=400),
        ev("flight.arrived", 41, delay_minutes=10),  # moves the watermark past the others
        ev("flight.arrived", 5, delay_minutes=200),  # same customer within a day: cooled down
        ev("flight.arrived", 5, subject="C-2", delay_minutes=200),
        ev("flight.arrived", 30, delay_minutes=90),  # not a long delay
        ev("flight.arrived", 31, delay_minutes="late"),  # not a number: no match
        ev("flight.arrived", 40, delay_minutes=181),
    )
    assert [(f.customer, f.severity, f.failure_at - T0) for f in findings] == [
        ("C-1", 3, timedelta(0)),
        ("C-2", 2, timedelta(hours=5)),
        ("C-1", 2, timedelta(hours=40)),
    ]


def test_count_fires_once_per_episode() -> None:
    contacts = [ev("support.contact", h) for h in (0, 24, 48, 60, 100)] + [ev("support.contact", h) for h in (400, 410)]
    contacts.append(ev("support.contact", 420))
    _, findings = run(*contacts, until_hours=421)
    # 0, 24, 48 make three in 7 days: one incident; 60 and 100 continue that episode; 400-420 is a new one.
    assert [(f.failure_at - T0, f.facts["count"]) for f in findings] == [
        (timedelta(hours=48), 3),
        (timedelta(hours=420), 3),
    ]
    assert findings[0].key == "C-1@2025-03-03T00:00:00.000000Z"


def test_events_of_one_instant_count_together() -> None:
    _, findings = run(*(ev("support.contact", 10) for _ in range(3)), until_hours=11)
    assert [f.facts["count"] for f in findings] == [3]


def test_sequence_pairs_the_latest_first_with_the_next_then_within_the_window() -> None:
    _, findings = run(
        ev("service.completed", 0, vehicle_id="V-1"),
        ev("service.opened", 24 * 10, vehicle_id="V-1"),  # rework: 10 days later
        ev("service.opened", 24 * 11, vehicle_id="V-1"),  # the same first: no second incident
        ev("service.completed", 24 * 12, vehicle_id="V-2"),
        ev("service.opened", 24 * 50, vehicle_id="V-2"),  # 38 days: too late to be rework
        until_hours=24 * 51,
    )
    assert [(f.key, f.failure_at - T0) for f in findings] == [("V-1@2025-03-01T00:00:00.000000Z", timedelta(days=10))]


def test_arrival_order_within_the_lateness_does_not_change_the_findings() -> None:
    events = [ev("support.contact", h) for h in (0, 1, 2)]
    rules = parse_rules([(None, RULES)])
    forward, backward = Evaluator(rules, lateness=timedelta(hours=5)), Evaluator(rules, lateness=timedelta(hours=5))
    found_forward = forward.observe(events) + forward.advance(T0 + timedelta(hours=10))
    found_backward = backward.observe(events[::-1]) + backward.advance(T0 + timedelta(hours=10))
    assert found_forward == found_backward
    assert len(found_forward) == 1


def test_state_is_forgotten_once_the_watermark_has_passed_it() -> None:
    evaluator, _ = run(
        ev("support.contact", 0),
        ev("service.completed", 0, vehicle_id="V-1"),
        ev("flight.arrived", 0, delay_minutes=500),
        until_hours=24 * 40,
    )
    assert (evaluator.windows, evaluator.pending, evaluator.last_fired) == ({}, {}, {})


def test_a_late_event_is_evaluated_at_once_and_counted() -> None:
    evaluator = Evaluator(parse_rules([(None, RULES)]))
    evaluator.observe([ev("support.contact", 100)])
    evaluator.advance(T0 + timedelta(hours=200))
    found = evaluator.observe([ev("flight.arrived", 50, delay_minutes=200)])
    assert evaluator.late_events == 1
    assert [f.rule_id for f in found] == ["long-delay"]
