"""Outreach when things break, on both engines: a real `amends worker` killed with SIGKILL while it holds leased
messages, stuck mid-send on an SMTP server that has stopped answering; and a case's apology written while the
SMTP server is down, which waits with its error and goes once when the server is back.

What "at least once" means here (docs/outreach-delivery.md, the delivery guarantee): a message a dead worker
held is sent again once its lease has run out, by another worker, and no message is lost. The server the dead
worker was talking to may hold a whole copy of the message it was sending (it had the end of DATA and had not
answered yet: the guarantee's case 2); if it delivers that copy as well, the customer gets two, and both carry
the same Message-ID. The other messages of the dead worker's batch never left it, so each of them goes once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, Envelope, Session

from amends.outreach.delivery import Delivery
from amends.outreach.outbox import Message, MessageStatus, Settled, claim, deliver_due, get_message
from amends.store import Database, tables
from tests.test_outreach import World, late_flight, world_with
from tests.test_smtp_channel import Mailbox, Server, a_draft, enqueue_all

MAIL_FROM = "Example Care <care@shop.example.com>"
DEADLINE_SECONDS = 60.0  # how long to wait for a condition before giving up: generous, never a measure of speed


class Stalling(Mailbox):
    """A server that takes a message's whole content and then stops answering, as an overloaded or wedged server
    does: it never says 250, nor anything else, until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await super().handle_DATA(server, session, envelope)  # keeps the copy it was given
        self.stalled.set()
        while not self.release.is_set():
            await asyncio.sleep(0.05)
        return "451 4.3.0 gave up"


@pytest.fixture
def stalling() -> Iterator[Server]:
    mailbox = Stalling()
    server = Server(mailbox)
    server.start()
    yield server
    mailbox.release.set()
    server.stop()


@pytest.fixture
def healthy() -> Iterator[Server]:
    server = Server(Mailbox())
    server.start()
    yield server
    server.stop()


class Worker:
    """`amends worker` as a user runs it, in a process of its own, configured by the environment alone."""

    def __init__(self, name: str, tmp_path: Path, db: Database, smtp: Server, **settings: str) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AMENDS_")}
        env = clean | {
            "AMENDS_DATABASE_URL": db.url.render_as_string(hide_password=False),
            "AMENDS_DETECT_ENABLED": "false",  # only the outbox: nothing else may claim the worker's time
            "AMENDS_RECOVER_ENABLED": "false",
            "AMENDS_DETECT_SWEEP_SECONDS": "0.2",  # how often the worker looks for due messages
            "AMENDS_SMTP_HOST": "127.0.0.1",
            "AMENDS_SMTP_PORT": str(smtp.port),
            "AMENDS_SMTP_SECURITY": "none",
            "AMENDS_MAIL_FROM": MAIL_FROM,
            "AMENDS_LOG_LEVEL": "info",
            **{f"AMENDS_{key.upper()}": value for key, value in settings.items()},
        }
        self.log = tmp_path / f"{name}.log"
        with self.log.open("wb") as log:  # the child has its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "amends.cli", "worker"],
                env=env,
                cwd=tmp_path,  # no amends.toml there
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def owns(self, message: Message) -> bool:
        """Whether the message is leased to this process: a worker's name is host:pid:thread."""
        return message.lease_owner is not None and message.lease_owner.split(":")[-2] == str(self.process.pid)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, how: signal.Signals) -> int:
        if self.process.poll() is None:
            self.process.send_signal(how)
        return self.process.wait(timeout=DEADLINE_SECONDS)


def wait_for(condition: Callable[[], bool], what: str, *workers: Worker) -> None:
    """Wait until `condition` holds; fail, with what the workers wrote, when it does not within the deadline or a
    worker exits."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        exited = [worker for worker in workers if worker.process.poll() is not None]
        if exited or time.monotonic() > deadline:
            logs = "\n".join(f"--- {worker.log.name}\n{worker.output()}" for worker in workers)
            reason = "a worker exited" if exited else f"{DEADLINE_SECONDS:.0f} s passed"
            pytest.fail(f"{reason} before {what}\n{logs}")
        time.sleep(0.05)


def messages_of(db: Database) -> list[Message]:
    with db.unit_of_work() as uow:
        ids = uow.execute(sa.select(tables.messages.c.id).order_by(tables.messages.c.id)).scalars().all()
        return [get_message(uow, message_id) for message_id in ids]


def message_ids(mailbox: Mailbox) -> list[str]:
    return [str(email["Message-ID"]) for email in mailbox.received]


@pytest.mark.slow
def test_messages_held_by_a_worker_killed_mid_send_go_once_each_after_its_lease_ends(
    db: Database, tmp_path: Path, stalling: Server, healthy: Server
) -> None:
    enqueue_all(db, [a_draft(n) for n in range(1, 5)])
    assert isinstance(stalling.mailbox, Stalling)
    lease = timedelta(seconds=3)

    stuck = Worker(
        "stuck",
        tmp_path,
        db,
        stalling,
        outbox_lease_seconds=str(lease.total_seconds()),
        smtp_timeout_seconds="600",  # it waits for the server's answer far longer than the test lasts
    )
    try:
        wait_for(stalling.mailbox.stalled.is_set, "the worker was stuck sending", stuck)
        held = messages_of(db)
        assert all(m.status is MessageStatus.PENDING and m.attempts == 1 and stuck.owns(m) for m in held), held
        ends = min(m.lease_until for m in held if m.lease_until is not None)
        # While the lease runs, no other worker can take them.
        assert claim(db, worker="probe", batch=10, lease=lease, now=ends - timedelta(milliseconds=1)) == []
        assert stuck.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        stuck.stop(signal.SIGKILL)
    assert messages_of(db) == held  # dead, it recorded nothing: the rows wait for their leases to end

    survivor = Worker("survivor", tmp_path, db, healthy, outbox_lease_seconds="60", smtp_timeout_seconds="10")
    try:
        wait_for(lambda: all(m.status is MessageStatus.SENT for m in messages_of(db)), "all were sent", survivor)
        assert survivor.stop(signal.SIGTERM) == 0, survivor.output()  # a clean stop: nothing more can go out
    finally:
        survivor.stop(signal.SIGKILL)

    sent = messages_of(db)
    assert all(m.attempts == 2 and m.lease_owner is None for m in sent)
    assert all(m.sent_at is not None and m.sent_at >= ends for m in sent)  # taken over only once the lease ended
    # None lost, none twice: each message once at the healthy server, under the Message-ID the outbox recorded.
    arrived = Counter(message_ids(healthy.mailbox))
    assert set(arrived.values()) == {1}
    assert set(arrived) == {m.provider_id for m in sent}
    assert len(arrived) == len(held)
    # The stalled server holds a whole copy of the first message, with the same Message-ID (at least once,
    # recognisably); the dead worker never reached the rest of its batch.
    (copy,) = message_ids(stalling.mailbox)
    first = min(held, key=lambda m: (m.next_attempt_at, m.id))
    assert copy == next(m.provider_id for m in sent if m.id == first.id)


# --- a case's apology while SMTP is down -----------------------------------------------------------------


@pytest.fixture
def smtp_down() -> Iterator[Server]:
    """A mail server that is not running yet, on a port of its own."""
    server = Server(Mailbox())
    yield server
    server.stop()


@pytest.fixture
def world(db: Database, smtp_down: Server) -> Iterator[World]:
    yield from world_with(
        db,
        smtp_host="127.0.0.1",
        smtp_port=smtp_down.port,
        smtp_security="none",
        smtp_timeout_seconds=5.0,
        mail_from="Example Air <care@air.example.com>",
    )


def deliver_at(delivery: Delivery, now: datetime) -> Settled:
    """One pass of the worker's delivery, with the clock at `now`."""
    return deliver_due(
        delivery.db,
        delivery.channels,
        worker="worker",
        now=now,
        batch=delivery.batch,
        lease=delivery.lease,
        max_attempts=delivery.max_attempts,
        backoff_base=delivery.backoff_base,
        backoff_cap=delivery.backoff_cap,
    )


def test_an_apology_written_while_smtp_is_down_waits_and_arrives_once_when_it_is_back(
    world: World, smtp_down: Server
) -> None:
    case_id = late_flight(world)
    world.post(f"/v1/cases/{case_id}/acknowledge")
    [apology] = world.post(f"/v1/cases/{case_id}/steps/empathise/complete")["messages"]
    delivery = Delivery.from_settings(world.db, world.client.app.state.settings)  # what `amends worker` runs

    assert delivery.tick().retrying == (apology["id"],)
    [waiting] = world.detail(case_id)["messages"]
    assert (waiting["status"], waiting["attempts"]) == ("pending", 1)
    assert f"cannot reach SMTP server 127.0.0.1:{smtp_down.port}" in waiting["last_error"]
    retry_at = datetime.fromisoformat(waiting["next_attempt_at"])
    assert retry_at - datetime.fromisoformat(waiting["created_at"]) >= delivery.backoff_base / 2

    smtp_down.start()
    assert deliver_at(delivery, retry_at - timedelta(seconds=1)) == Settled()  # back, but the backoff holds
    assert deliver_at(delivery, retry_at).sent == (apology["id"],)
    assert deliver_at(delivery, retry_at + timedelta(hours=2)) == Settled()
    [email] = smtp_down.mailbox.received
    [sent] = world.detail(case_id)["messages"]
    assert (sent["status"], sent["attempts"], sent["provider_id"]) == ("sent", 2, email["Message-ID"])
    assert email["To"] == "zoe@example.com"
    assert "AA1" in email["Subject"]
