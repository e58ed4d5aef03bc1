"""The outbox on both engines: idempotent enqueueing in the caller's transaction, claims that never give one
message to two workers, leases that outlive a dead worker, backoff, dead letters, and the file channel."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from amends.errors import Conflict, InvalidInput, NotFound
from amends.outreach.channels import FileChannel
from amends.outreach.outbox import (
    Channel,
    ChannelName,
    Draft,
    Message,
    MessageKind,
    MessageStatus,
    Outcome,
    Settled,
    backoff_delay,
    claim,
    deliver_due,
    enqueue,
    get_message,
    list_messages,
    retry_dead,
    settle,
)
from amends.store import Database
from tests.conftest import NOW, count_rows, empty_tables

LEASE = timedelta(minutes=5)
BASE = timedelta(minutes=1)
CAP = timedelta(hours=1)


def a_draft(number: int = 1, **changes: Any) -> Draft:
    draft = Draft(
        key=f"case:{number}:empathise:email",
        channel=ChannelName.EMAIL,
        kind=MessageKind.APOLOGY,
        recipient=f"customer{number}@example.com",
        subject="We are sorry",
        text="Your parcel came three days late.",
        html="<p>Your parcel came three days late.</p>",
        headers={"List-Unsubscribe": "<https://amends.example.com/u/abc>"},
        case_id=number,
        customer_id=f"C-{number}",
    )
    return replace(draft, **changes)


def enqueue_all(db: Database, drafts: Sequence[Draft]) -> list[Message]:
    with db.unit_of_work() as uow:
        stored = [enqueue(uow, draft, now=NOW)[0] for draft in drafts]
        uow.commit()
    return stored


def read(db: Database, message_id: int) -> Message:
    with db.unit_of_work() as uow:
        return get_message(uow, message_id)


class Answering:
    """A channel that answers every message the same way and remembers the ids it was given."""

    name = "email"

    def __init__(self, *, ok: bool = True, permanent: bool = False, error: str | None = None) -> None:
        self.ok, self.permanent, self.error = ok, permanent, error
        self.given: list[int] = []

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        self.given += [message.id for message in messages]
        return [Outcome(m.id, self.ok, self.permanent, self.error, f"<{m.id}@test>") for m in messages]


def deliver(
    db: Database, channel: Channel, *, worker: str = "w1", at: timedelta = timedelta(0), max_attempts: int = 5
) -> Settled:
    return deliver_due(
        db,
        {"email": channel},
        worker=worker,
        now=NOW + at,
        batch=50,
        lease=LEASE,
        max_attempts=max_attempts,
        backoff_base=BASE,
        backoff_cap=CAP,
    )


# --- enqueueing ------------------------------------------------------------------------------------------


def test_the_same_draft_enqueued_twice_is_one_message(db: Database) -> None:
    with db.unit_of_work() as uow:
        first, created = enqueue(uow, a_draft(), now=NOW)
        uow.commit()
    assert created
    with db.unit_of_work() as uow:
        again, created_again = enqueue(uow, a_draft(), now=NOW + timedelta(hours=1))
        uow.commit()
    assert not created_again
    assert again == first
    assert first.status is MessageStatus.PENDING
    assert first.attempts == 0
    assert first.next_attempt_at == NOW
    assert dict(first.headers) == {"List-Unsubscribe": "<https://amends.example.com/u/abc>"}
    assert count_rows(db, "messages") == 1


def test_a_different_message_under_a_stored_key_is_a_conflict(db: Database) -> None:
    enqueue_all(db, [a_draft()])
    with db.unit_of_work() as uow, pytest.raises(Conflict, match=r"case:1:empathise:email"):
        enqueue(uow, a_draft(text="Something else entirely."), now=NOW)
    with db.unit_of_work() as uow:  # when it goes is not what it says
        _message, created = enqueue(uow, a_draft(not_before=NOW + timedelta(hours=8)), now=NOW)
    assert not created


def test_the_message_is_written_in_the_callers_transaction(db: Database) -> None:
    with db.unit_of_work() as uow:
        enqueue(uow, a_draft(), now=NOW)
        # no commit: the decision that caused it did not happen, so neither does the message
    assert count_rows(db, "messages") == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"headers": {"Bcc": "someone@example.com"}}, "headers.Bcc"),
        ({"headers": {"X-Note": "a\r\nBcc: someone@example.com"}}, "headers.X-Note"),
        ({"headers": {"Bad Name": "x"}}, "headers.Bad Name"),
        ({"subject": "Sorry\nBcc: someone@example.com"}, "subject"),
        ({"recipient": "not an address"}, "recipient"),
        ({"recipient": "a@example.com\nBcc: someone@example.com"}, "recipient"),
        ({"channel": ChannelName.WEBHOOK, "recipient": "https://hooks.example.com/a\nb"}, "recipient"),
        ({"channel": "pigeon"}, "channel"),
        ({"kind": "spam"}, "kind"),
        ({"key": ""}, "key"),
        ({"text": "  "}, "text"),
    ],
)
def test_a_draft_that_cannot_be_sent_safely_is_refused_naming_the_field(
    db: Database, changes: dict[str, Any], field: str
) -> None:
    with db.unit_of_work() as uow, pytest.raises(InvalidInput) as refused:
        enqueue(uow, a_draft(**changes), now=NOW)
    assert refused.value.field == field


# --- claiming --------------------------------------------------------------------------------------------


def test_two_workers_claiming_at_once_never_get_the_same_message(db: Database) -> None:
    messages = enqueue_all(db, [a_draft(n) for n in range(1, 121)])
    other = Database(db.url.render_as_string(hide_password=False))
    # Both claim in every round, at the same moment, until a round leaves both empty-handed, so the claims race
    # each other every time. Which of them wins a round is the scheduler's affair (a CI run once saw one take all
    # 120); that a claim takes other rows rather than waiting is the next test's, made deterministic there.
    rounds = threading.Barrier(2)
    got: dict[str, list[int]] = {"a": [], "b": []}
    empty: dict[str, bool] = {"a": False, "b": False}
    errors: list[BaseException] = []

    def work(name: str, database: Database) -> None:
        try:
            while True:
                rounds.wait(timeout=30)
                batch = claim(database, worker=name, batch=7, lease=LEASE, now=NOW)
                got[name] += [message.id for message in batch]
                empty[name] = not batch
                rounds.wait(timeout=30)
                if empty["a"] and empty["b"]:
                    return
        except BaseException as exc:
            errors.append(exc)
            rounds.abort()

    threads = [threading.Thread(target=work, args=(name, d)) for name, d in (("a", db), ("b", other))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        other.dispose()
    assert errors == []
    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == sorted(message.id for message in messages)


def test_a_claim_skips_the_messages_another_worker_is_taking_instead_of_waiting(postgres_migrated: Database) -> None:
    """PostgreSQL (SQLite claims under its one write lock): while one transaction holds the first due messages'
    rows, a claim takes the next ones at once."""
    db = postgres_migrated
    empty_tables(db)
    messages = enqueue_all(db, [a_draft(n) for n in range(1, 11)])
    held = sorted(message.id for message in messages)[:4]
    with db.engine.connect() as holder, ThreadPoolExecutor(1) as pool:
        holder.execute(sa.text("SELECT id FROM messages WHERE id = ANY(:ids) FOR UPDATE"), {"ids": held})
        taking = pool.submit(claim, db, worker="b", batch=4, lease=LEASE, now=NOW)
        try:
            batch = taking.result(timeout=20)  # a claim that waited for the held rows would time out here
        finally:
            holder.rollback()
    assert len(batch) == 4
    assert not {message.id for message in batch} & set(held)


def test_a_message_waits_for_its_not_before(db: Database) -> None:
    (message,) = enqueue_all(db, [a_draft(not_before=NOW + timedelta(hours=8))])
    assert message.next_attempt_at == NOW + timedelta(hours=8)
    assert claim(db, worker="w1", batch=10, lease=LEASE, now=NOW + timedelta(hours=7)) == []
    (claimed,) = claim(db, worker="w1", batch=10, lease=LEASE, now=NOW + timedelta(hours=8))
    assert claimed.id == message.id
    assert claimed.attempts == 1
    assert claimed.lease_owner == "w1"
    assert claimed.lease_until == NOW + timedelta(hours=8) + LEASE


def test_a_worker_leaves_the_channels_it_cannot_send_on(db: Database) -> None:
    (card,) = enqueue_all(db, [a_draft(channel=ChannelName.CARD, recipient="1 Main St, Springfield")])
    assert deliver(db, Answering()) == Settled()
    assert read(db, card.id).attempts == 0


# --- a worker that dies ----------------------------------------------------------------------------------


def test_a_message_claimed_by_a_worker_that_died_goes_once_its_lease_ends(db: Database) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    (claimed,) = claim(db, worker="dead", batch=10, lease=LEASE, now=NOW)  # ... and the worker stops here
    survivor = Answering()
    assert deliver(db, survivor, worker="alive", at=LEASE - timedelta(seconds=1)) == Settled()
    assert deliver(db, survivor, worker="alive", at=LEASE).sent == (message.id,)
    assert survivor.given == [message.id]
    sent = read(db, message.id)
    assert sent.status is MessageStatus.SENT
    assert sent.attempts == 2
    assert sent.provider_id == f"<{message.id}@test>"
    assert sent.lease_owner is None

    # The first worker comes back to life and reports what it thinks happened: nothing changes.
    late = settle(
        db,
        [Outcome(claimed.id, ok=False, permanent=True, error="late")],
        worker="dead",
        now=NOW + LEASE * 2,
        max_attempts=5,
        backoff_base=BASE,
        backoff_cap=CAP,
    )
    assert late == Settled(lost=(message.id,))
    assert read(db, message.id) == sent


def test_a_late_worker_cannot_settle_a_message_another_worker_holds(db: Database) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    claim(db, worker="slow", batch=10, lease=LEASE, now=NOW)
    (taken,) = claim(db, worker="fast", batch=10, lease=LEASE, now=NOW + LEASE)
    outcome = [Outcome(message.id, ok=True, provider_id="<slow@test>")]
    settled = settle(db, outcome, worker="slow", now=NOW + LEASE, max_attempts=5, backoff_base=BASE, backoff_cap=CAP)
    assert settled.lost == (message.id,)
    assert read(db, message.id) == taken  # still pending, leased to the worker that took over


def test_a_message_whose_last_attempt_never_reported_is_dead_not_tried_for_ever(db: Database) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    for attempt in range(3):  # each worker stops while sending it
        claim(db, worker=f"w{attempt}", batch=10, lease=LEASE, now=NOW + LEASE * attempt, max_attempts=3)
    survivor = Answering()
    assert deliver(db, survivor, at=LEASE * 3, max_attempts=3) == Settled()
    assert survivor.given == []
    dead = read(db, message.id)
    assert dead.status is MessageStatus.DEAD
    assert dead.attempts == 3
    assert dead.last_error is not None
    assert "may or may not have gone" in dead.last_error


# --- failures, backoff and dead letters ------------------------------------------------------------------


def test_the_wait_between_attempts_doubles_up_to_the_cap_with_jitter() -> None:
    assert backoff_delay(1, base=BASE, cap=CAP, jitter=1.0) == BASE
    assert backoff_delay(1, base=BASE, cap=CAP, jitter=0.0) == BASE / 2
    assert [backoff_delay(n, base=BASE, cap=CAP, jitter=1.0) / BASE for n in range(1, 9)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        60,
        60,
    ]
    assert backoff_delay(1000, base=BASE, cap=CAP, jitter=1.0) == CAP


def test_a_temporary_failure_is_tried_again_later_and_later(db: Database) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    refusing = Answering(ok=False, error="451 4.3.0 try again later")
    assert deliver(db, refusing).retrying == (message.id,)
    first = read(db, message.id)
    assert first.status is MessageStatus.PENDING
    assert first.last_error == "451 4.3.0 try again later"
    assert first.lease_owner is None
    assert NOW + BASE / 2 <= first.next_attempt_at <= NOW + BASE

    at = first.next_attempt_at - NOW
    assert deliver(db, refusing, at=at - timedelta(seconds=1)) == Settled()  # not before its time
    deliver(db, refusing, at=at)
    second = read(db, message.id)
    assert second.attempts == 2
    assert first.next_attempt_at + BASE <= second.next_attempt_at <= first.next_attempt_at + 2 * BASE


def test_a_message_that_keeps_failing_is_dead_with_its_last_error(db: Database) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    refusing = Answering(ok=False, error="451 4.3.0 try again later")
    at = timedelta(0)
    for _attempt in range(3):
        deliver(db, refusing, at=at, max_attempts=3)
        at = read(db, message.id).next_attempt_at - NOW
    dead = read(db, message.id)
    assert dead.status is MessageStatus.DEAD
    assert dead.attempts == 3
    assert dead.last_error == "451 4.3.0 try again later"
    assert deliver(db, refusing, at=at + CAP, max_attempts=3) == Settled()
    assert refusing.given == [message.id] * 3
    with db.unit_of_work() as uow:
        letters, _cursor = list_messages(uow, status="dead")
    assert [letter.id for letter in letters] == [message.id]


def test_a_permanent_failure_is_dead_after_one_attempt(db: Database) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    assert deliver(db, Answering(ok=False, permanent=True, error="550 no such user")).dead == (message.id,)
    dead = read(db, message.id)
    assert (dead.status, dead.attempts, dead.last_error) == (MessageStatus.DEAD, 1, "550 no such user")


def test_each_message_of_a_batch_keeps_its_own_outcome(db: Database) -> None:
    messages = enqueue_all(db, [a_draft(n) for n in range(1, 7)])
    claim(db, worker="w1", batch=10, lease=LEASE, now=NOW)
    outcomes = [
        Outcome(messages[0].id, ok=True, provider_id="<one@test>"),
        Outcome(messages[1].id, ok=False, error="451 busy"),
        Outcome(messages[2].id, ok=False, permanent=True, error="550 no such user"),
        Outcome(messages[3].id, ok=True, provider_id="<four@test>"),
        Outcome(messages[4].id, ok=False, error="421 closing"),
        Outcome(messages[5].id, ok=False, permanent=True, error="554 refused"),
    ]
    options: dict[str, Any] = {"now": NOW, "max_attempts": 5, "backoff_base": BASE, "backoff_cap": CAP}
    settled = settle(db, outcomes, worker="w1", **options)
    another = [Outcome(m.id, ok=True, provider_id="<another@test>") for m in messages]
    assert settle(db, another, worker="w2", **options) == Settled(lost=tuple(m.id for m in messages))

    one, two, three, four, five, six = (read(db, m.id) for m in messages)
    assert settled == Settled(sent=(one.id, four.id), retrying=(two.id, five.id), dead=(three.id, six.id))
    assert [(m.status, m.provider_id, m.sent_at) for m in (one, four)] == [
        (MessageStatus.SENT, "<one@test>", NOW),
        (MessageStatus.SENT, "<four@test>", NOW),
    ]
    assert [(m.status, m.last_error) for m in (two, five)] == [
        (MessageStatus.PENDING, "451 busy"),
        (MessageStatus.PENDING, "421 closing"),
    ]
    assert all(NOW + BASE / 2 <= m.next_attempt_at <= NOW + BASE for m in (two, five))
    assert [(m.status, m.last_error) for m in (three, six)] == [
        (MessageStatus.DEAD, "550 no such user"),
        (MessageStatus.DEAD, "554 refused"),
    ]
    assert all(m.lease_owner is None and m.lease_until is None for m in (one, two, three, four, five, six))


def test_a_channel_that_raises_counts_as_a_temporary_failure(db: Database) -> None:
    class Broken:
        name = "email"

        def send(self, messages: Sequence[Message]) -> list[Outcome]:
            raise RuntimeError("a bug in the channel")

    (message,) = enqueue_all(db, [a_draft()])
    assert deliver(db, Broken()).retrying == (message.id,)
    assert read(db, message.id).last_error == "RuntimeError: a bug in the channel"


def test_a_dead_message_can_be_retried(db: Database) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    deliver(db, Answering(ok=False, permanent=True, error="550 mailbox full"))
    later = NOW + timedelta(days=1)
    with db.unit_of_work() as uow:
        retried = retry_dead(uow, message.id, now=later)
        uow.commit()
    assert (retried.status, retried.attempts, retried.next_attempt_at) == (MessageStatus.PENDING, 0, later)
    assert deliver(db, Answering(), at=timedelta(days=1)).sent == (message.id,)
    with db.unit_of_work() as uow:
        with pytest.raises(Conflict, match="sent"):
            retry_dead(uow, message.id, now=later)
        with pytest.raises(NotFound):
            retry_dead(uow, message.id + 100, now=later)


# --- reading ---------------------------------------------------------------------------------------------


def test_messages_are_listed_newest_first_a_page_at_a_time(db: Database) -> None:
    with db.unit_of_work() as uow:
        for number in range(1, 6):
            enqueue(uow, a_draft(number, case_id=7 if number % 2 else 8), now=NOW + timedelta(minutes=number))
        uow.commit()
    with db.unit_of_work() as uow:
        first, cursor = list_messages(uow, limit=2)
        assert cursor is not None
        second, cursor = list_messages(uow, limit=2, cursor=cursor)
        assert cursor is not None
        third, cursor = list_messages(uow, limit=2, cursor=cursor)
        of_case, _ = list_messages(uow, case_id=7)
        with pytest.raises(InvalidInput, match="status"):
            list_messages(uow, status="lost")
    assert cursor is None
    assert [m.customer_id for m in first + second + third] == ["C-5", "C-4", "C-3", "C-2", "C-1"]
    assert [m.customer_id for m in of_case] == ["C-5", "C-3", "C-1"]


# --- the file channel ------------------------------------------------------------------------------------


def test_the_file_channel_writes_one_json_line_per_message(db: Database, tmp_path: Path) -> None:
    messages = enqueue_all(db, [a_draft(1), a_draft(2)])
    path = tmp_path / "outbox" / "messages.jsonl"
    assert deliver(db, FileChannel(path)).sent == tuple(m.id for m in messages)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(line["id"], line["recipient"], line["attempt"]) for line in lines] == [
        (messages[0].id, "customer1@example.com", 1),
        (messages[1].id, "customer2@example.com", 1),
    ]
    assert lines[0]["headers"] == {"List-Unsubscribe": "<https://amends.example.com/u/abc>"}
    assert read(db, messages[0].id).provider_id == f"{path}#{messages[0].id}"


def test_the_file_channel_writes_to_stdout_without_a_path(db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    assert deliver(db, FileChannel()).sent == (message.id,)
    assert json.loads(capsys.readouterr().out)["text"] == "Your parcel came three days late."


def test_a_file_that_cannot_be_written_is_a_temporary_failure(db: Database, tmp_path: Path) -> None:
    (message,) = enqueue_all(db, [a_draft()])
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("", encoding="utf-8")
    assert deliver(db, FileChannel(blocked / "messages.jsonl")).retrying == (message.id,)
    assert "cannot write" in (read(db, message.id).last_error or "")
