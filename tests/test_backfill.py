"""Backfill on SQLite and PostgreSQL: stored history through the batch evaluator gives the incidents the
durable streaming evaluator stores for the same events, opens nothing twice, and honours since/until."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from amends.detect import Detector, IncidentFilter, RuleSet, list_incidents, load_rules
from amends.detect.backfill import backfill
from amends.detect.packs import pack_paths
from amends.errors import InvalidInput
from amends.events import Event, append_events, validate_event
from amends.store import Database
from amends.world import generate_world

NOW = datetime(2026, 1, 1, tzinfo=UTC)
START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> list[Event]:
    events = []
    for business in ("shop", "car_service"):
        for envelope in generate_world(business, customers=120, days=90, seed=5, start=START):
            event = validate_event(envelope)
            assert isinstance(event, Event)
            events.append(event)
    return sorted(events, key=lambda event: event.time)


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(pack_paths(["shop", "car_service"]))


def store(db: Database, events: list[Event], detector: Detector | None = None) -> None:
    for start in range(0, len(events), 2_000):
        with db.unit_of_work(writes=True) as uow:
            append_events(uow, events[start : start + 2_000], received_at=NOW, watcher=detector)
            uow.commit()


def stored(db: Database) -> set[tuple[str, str, str, datetime, str]]:
    with db.unit_of_work() as uow:
        page = list_incidents(uow, IncidentFilter(), limit=100_000)
    return {(i.rule_id, i.key, i.status, i.failure_at, i.detected_by) for i in page.incidents}


def test_backfill_stores_what_streaming_stores_and_never_twice(
    db: Database, world: list[Event], rules: RuleSet
) -> None:
    until = START + timedelta(days=120)  # past the world's end: every deadline falls due
    # Streaming: the detector sees the events as they are stored (by their own clock), then a process with
    # the wall clock past the world's end fires what is still due.
    store(db, world, Detector(rules, clock="events"))
    Detector(rules, clock="wall", now=lambda: until).sweep(db)
    streamed = {incident[:4] for incident in stored(db)}
    assert len(streamed) > 50
    assert any(status == "resolved_late" for _, _, status, _ in streamed)

    assert backfill(db, rules, until=until, now=NOW).detected.opened == 0  # nothing new
    assert {incident[:4] for incident in stored(db)} == streamed
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM incidents")
    done = backfill(db, rules, until=until, now=NOW)
    assert done.detected.opened == len(streamed)
    assert {incident[:4] for incident in stored(db)} == streamed  # the same answer from history


def test_backfill_of_history_stored_without_detection(db: Database, world: list[Event], rules: RuleSet) -> None:
    until = START + timedelta(days=120)
    store(db, world)
    first = backfill(db, rules, until=until, now=NOW)
    incidents = stored(db)
    assert first.detected.opened == len(incidents) > 50
    assert {by for *_, by in incidents} == {"backfill"}
    again = backfill(db, rules, until=until, now=NOW)
    assert again.detected.opened == 0
    assert again.findings == first.findings
    assert stored(db) == incidents


def test_since_and_until_bound_what_is_read(db: Database, world: list[Event], rules: RuleSet) -> None:
    store(db, world)
    since, until = START + timedelta(days=30), START + timedelta(days=45)
    done = backfill(db, rules, since=since, until=until, now=NOW)
    wanted = {t for rule in rules for t in _types(rule)}
    assert done.events == sum(1 for e in world if since <= e.time < until and e.type in wanted)
    assert all(since <= incident[3] < until + timedelta(days=30) for incident in stored(db))
    with pytest.raises(InvalidInput, match="since"):
        backfill(db, rules, since=until, until=since, now=NOW)


def _types(rule: object) -> tuple[str, ...]:
    from amends.detect.rules import event_types

    return event_types(rule)  # type: ignore[arg-type]
