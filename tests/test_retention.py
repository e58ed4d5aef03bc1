"""Retention, on both engines: events past `events_retention` deleted (a late arrival kept), what customers wrote
past `feedback_text_retention` erased with its labels and ratings kept, batch by batch, from the background work
and from `amends retention`; periods too short refused by name."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.access import Scope
from amends.background import Background
from amends.config import Settings, SettingsError, load_settings
from amends.errors import Conflict
from amends.events import Event, validate_event
from amends.events.ledger import append_events
from amends.privacy import ERASED
from amends.privacy import retention as retention_module
from amends.privacy.retention import Retained, Retention
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import an_event, new_key, settings_for
from tests.test_inbound import apologise, as_posted, deliver, post, reply_to
from tests.test_outreach import world_with

NOW = datetime.now(UTC).replace(microsecond=0)


def _events(db: Database, numbers: range, *, happened: datetime, arrived: datetime) -> None:
    valid = [validate_event(an_event(n, time=happened.isoformat())) for n in numbers]
    with db.unit_of_work(writes=True) as uow:
        append_events(uow, [e for e in valid if isinstance(e, Event)], received_at=arrived)
        uow.commit()


def _event_ids(db: Database) -> set[str]:
    with db.unit_of_work() as uow:
        return set(uow.execute(sa.select(tables.events.c.event_id)).scalars())


def test_events_past_their_time_go_batch_by_batch_and_a_late_arrival_stays(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention_module, "_BATCH", 40)
    old = NOW - timedelta(days=100)
    _events(db, range(130), happened=old, arrived=old)  # past: more than three batches
    _events(db, range(200, 210), happened=old, arrived=NOW - timedelta(hours=1))  # late: arrived just now
    _events(db, range(300, 310), happened=NOW - timedelta(days=5), arrived=NOW - timedelta(days=5))
    keeper = Retention(db, events_for=timedelta(days=90), texts_for=None)

    done = keeper.run(NOW)

    assert done.events == 130
    assert _event_ids(db) == {f"evt-{n}" for n in (*range(200, 210), *range(300, 310))}
    assert keeper.run(NOW).events == 0
    with db.unit_of_work() as uow:  # the customers stay: their cases and measures still name them
        assert uow.execute(sa.select(sa.func.count()).select_from(tables.customers)).scalar_one() == 7


def test_what_customers_wrote_is_erased_after_its_time_and_the_labels_stay(db: Database) -> None:
    settings = settings_for(db, feedback_text_retention="60d")
    key = new_key(db, "mailbox", [Scope.FEEDBACK_WRITE])
    with TestClient(create_app(settings, db)) as client:
        for number, days in ((1, 90), (2, 61), (3, 10)):
            posted = client.post(
                "/v1/feedback",
                json={"source": "mailbox", "id": f"m-{number}", "channel": "email", "customer": f"C-{number}",
                      "author": "Robin Vale", "text": f"Terrible wait, number {number}. Call me on 0161 496 0000.",
                      "rating": 1, "scale": "csat", "received_at": (NOW - timedelta(days=days)).isoformat()},
                headers={"Authorization": f"Bearer {key}"},
            )  # fmt: skip
            assert posted.status_code == 201, posted.text
    with db.unit_of_work() as uow:
        before = {r.id: r for r in uow.execute(sa.select(tables.feedback))}

    Background(None, None, seconds=60, retention=Retention.from_settings(db, settings)).tick()

    with db.unit_of_work() as uow:
        after = {r.id: r for r in uow.execute(sa.select(tables.feedback))}
    erased = {i for i, r in after.items() if r.text == ERASED}
    assert erased == {i for i, r in before.items() if r.received_at < NOW - timedelta(days=60)}
    assert len(erased) == 2
    for i in erased:
        assert after[i].author is None
        assert after[i].rating == before[i].rating == 1
        assert after[i].sentiment == before[i].sentiment
        assert after[i].topic == before[i].topic
    [kept] = [r for i, r in after.items() if i not in erased]
    assert "number 3" in kept.text
    assert kept.author == "Robin Vale"
    assert Retention.from_settings(db, settings).run(NOW).erased["feedback"] == 0


def test_periods_shorter_than_a_month_are_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENDS_EVENTS_RETENTION", "10d")
    with pytest.raises(SettingsError, match=r"AMENDS_EVENTS_RETENTION.*at least 30 days"):
        load_settings()
    monkeypatch.delenv("AMENDS_EVENTS_RETENTION")
    assert Settings(feedback_text_retention="400d").feedback_text_retention == timedelta(days=400)
    assert Settings().events_retention is None


def test_the_command_applies_retention_and_says_what_it_did(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'amends.db'}"
    env = {"AMENDS_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "amends.cli", *args], env=env | extra, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip

    assert cli("init").returncode == 0
    db = Database(url)
    try:
        old = NOW - timedelta(days=400)
        _events(db, range(25), happened=old, arrived=old)
        _events(db, range(100, 105), happened=NOW, arrived=NOW)
    finally:
        db.dispose()
    unset = cli("retention")
    assert unset.returncode == 2
    assert "events_retention" in unset.stderr
    done = cli("retention", AMENDS_EVENTS_RETENTION="365d")
    assert done.returncode == 0, done.stderr
    assert "25 events deleted" in done.stderr
    db = Database(url)
    try:
        assert _event_ids(db) == {f"evt-{n}" for n in range(100, 105)}
    finally:
        db.dispose()


def test_replies_complaints_and_answers_are_erased_after_their_time_with_the_sender_and_the_threads_excerpt(
    db: Database,
) -> None:
    now = datetime.now(UTC)
    for world in world_with(db):
        world.keys["mail"] = new_key(db, "mail", [Scope.INBOUND_WRITE])
        case_id = apologise(world)
        [received] = deliver(world)
        receipt = post(world, "rfc822", **as_posted("rfc822", reply_to(received))).json()
        answered = world.client.post(
            f"/v1/feedback/{receipt['feedback_id']}/responses",
            headers=world.as_("boss"),
            json={"text": "Zoë, your bag is on its way from Madrid.", "channel": "phone"},
        )
        assert answered.status_code == 200, answered.text
        for number, days in ((1, 90), (2, 10)):
            complained = world.client.post(
                "/v1/complaints",
                headers=world.as_("integration"),
                json={
                    "source": "desk",
                    "id": f"k-{number}",
                    "customer": "C-1",
                    "channel": "phone",
                    "text": f"Complaint {number}: call Zoë on 0161 496 0000.",
                    "received_at": (now - timedelta(days=days)).isoformat(),
                },
            )
            assert complained.status_code == 201, complained.text
    keeper = Retention(db, events_for=None, texts_for=timedelta(days=60))

    assert keeper.run(now).erased == {"feedback": 0, "replies": 0, "complaints": 1, "answers": 0, "messages": 0}
    with db.unit_of_work() as uow:
        complaints = dict(uow.execute(sa.select(tables.complaints.c.external_id, tables.complaints.c.text)).all())
    assert complaints == {"k-1": ERASED, "k-2": "Complaint 2: call Zoë on 0161 496 0000."}

    later = keeper.run(now + timedelta(days=61))  # everything is past its time now

    sent = later.erased.pop("messages")
    assert later.erased == {"feedback": 1, "replies": 1, "complaints": 1, "answers": 1}
    assert sent >= 1  # the apology, and whatever else went out
    with db.unit_of_work() as uow:
        [reply] = uow.execute(sa.select(tables.inbound_replies)).all()
        notes = uow.execute(
            sa.select(tables.case_contacts.c.note).where(
                tables.case_contacts.c.case_id == case_id, tables.case_contacts.c.direction == "inbound"
            )
        ).scalars()
        [answer] = uow.execute(sa.select(tables.feedback_responses.c.text)).scalars()
        written = {
            table.name: uow.execute(
                sa.select(sa.func.count()).where(sa.cast(column, sa.Text).contains(phrase))
            ).scalar_one()
            for table in (tables.inbound_replies, tables.case_contacts, tables.complaints, tables.feedback_responses)
            for column in table.columns
            for phrase in ("Zoë", "zoe@example.com", "the miles arrived", "0161 496 0000")
            if not isinstance(column.type, sa.Integer | sa.Float | sa.Boolean)
        }
    assert (reply.text, reply.subject, reply.from_address) == (ERASED, ERASED, ERASED)
    assert (reply.full_text, reply.html, reply.headers, reply.attachments) == (None, None, [], None)
    assert reply.matched_by == "in_reply_to"  # what the measures read stays
    assert f"email reply {reply.id}: {ERASED}" in set(notes)  # the thread still says a reply came
    assert answer == ERASED
    assert not any(written.values()), written
    with db.unit_of_work() as uow:
        outbox = uow.execute(sa.select(tables.messages)).all()
    assert keeper.run(now + timedelta(days=61)).erased == dict.fromkeys(
        ("feedback", "replies", "complaints", "answers", "messages"), 0
    )
    # The outbox's copies of what went out are erased too, what the measures count of them stays; a message still
    # waiting to go keeps what it will say.
    gone = [m for m in outbox if m.status != "pending"]
    assert len(gone) == sent
    assert all((m.text, m.subject, m.recipient, m.html) == (ERASED, ERASED, ERASED, None) for m in gone)
    assert all(m.kind and m.channel and m.customer_id == "C-1" for m in gone)
    assert all(m.text != ERASED for m in outbox if m.status == "pending")


def test_a_pass_that_fails_is_tried_again_a_period_later_not_at_every_tick(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[datetime] = []

    def failing(self: Retention, now: datetime) -> Retained:
        passes.append(now)
        raise Conflict("the database refused it")

    monkeypatch.setattr(Retention, "run", failing)
    background = Background(
        None, None, seconds=1, retention=Retention(db, events_for=None, texts_for=timedelta(days=60))
    )
    with pytest.raises(Conflict):
        background.tick()
    background.tick()  # the next second: not again
    background.tick()
    assert len(passes) == 1


def test_a_card_not_posted_yet_keeps_its_text_and_address_whatever_its_age(db: Database) -> None:
    """A hand-written card is copied from its message: until it is posted, the message is work, not a record."""
    old = NOW - timedelta(days=90)
    message = {"case_id": None, "customer_id": "C-1", "channel": "card", "kind": "apology", "subject": "Sorry",
               "text": "Dear Zoë, we are sorry.", "html": None, "headers": {}, "status": "sent", "attempts": 1,
               "not_before": old, "next_attempt_at": old, "created_at": old, "sent_at": old,
               "recipient": "Zoë Example, 1 High Street, Leeds"}  # fmt: skip
    with db.unit_of_work(writes=True) as uow:
        for key, posted_at in (("card-waiting", None), ("card-posted", old + timedelta(days=2))):
            [message_id] = uow.execute(
                sa.insert(tables.messages).values(key=key, **message).returning(tables.messages.c.id)
            ).scalars()
            uow.execute(sa.insert(tables.card_tasks).values(
                message_id=message_id, customer_id="C-1", created_at=old, posted_at=posted_at,
                posted_by="ana" if posted_at else None,
            ))  # fmt: skip
        uow.commit()

    done = Retention(db, events_for=None, texts_for=timedelta(days=60)).run(NOW)

    assert done.erased["messages"] == 1
    with db.unit_of_work() as uow:
        kept = dict(uow.execute(sa.select(tables.messages.c.key, tables.messages.c.recipient)).all())
    assert kept == {"card-waiting": "Zoë Example, 1 High Street, Leeds", "card-posted": ERASED}
