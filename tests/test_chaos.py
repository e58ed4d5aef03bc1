"""Crash anywhere, on both engines: the sample world goes through `amends serve` while `amends worker` sweeps, takes
incidents into cases and delivers email, and a desk process works the cases; all three are killed with SIGKILL at
random moments (AMENDS_CHAOS_KILLS, 30 by default) and started again. At the end, the invariants hold against one
uninterrupted embedded process fed the same events: every accepted event stored once, every incident once, one case
per incident, one ledger entry per grant, every timer fired, and every message delivered to the SMTP server, each
under one Message-ID (delivery is at least once, docs/outreach-delivery.md: a worker killed between the server's
acceptance and its commit sends that batch again, with the same Message-IDs)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from amends.config import Settings
from amends.simulation import work_open_cases
from amends.store import Database, tables
from amends.world import generate_world
from tests.conftest import SECRET, new_key
from tests.test_broker_worker import LATENESS, incidents, wait_for, wait_stable
from tests.test_cli import _free_port
from tests.test_scale_out import _embedded, cases, environment, ledger_entries, messages
from tests.test_smtp_channel import Mailbox, Server

KILLS = int(os.environ.get("AMENDS_CHAOS_KILLS", "30"))
AMENDS = str(Path(sys.executable).parent / "amends")
# The desk: work every open case as of a moment given, as the sample world's staff do (amends.simulation).
DESK = (
    "import sys; from datetime import datetime; from amends.config import load_settings; "
    "from amends.store import Database; from amends.simulation import work_open_cases; "
    "s = load_settings(); work_open_cases(Database.from_settings(s), s, now=datetime.fromisoformat(sys.argv[1]))"
)


@pytest.fixture
def smtp() -> Iterator[Server]:
    running = Server(Mailbox())
    running.start()
    yield running
    running.stop()


class Process:
    """One of the product's processes, started again each time it is killed (until `done`)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path,
                 ready: Callable[[], bool] | None = None) -> None:  # fmt: skip
        self.name, self.command, self.env, self.log, self.ready = name, command, env, log, ready
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.done = False  # a desk that finished its work is not started again

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        if self.ready is not None:
            wait_for(self.ready, timeout=60, what=f"{self.name} to be ready")

    def kill_and_restart(self) -> bool:
        process = self.process
        if process is None or process.poll() is not None:
            if process is not None and process.returncode == 0:
                self.done = True
            return False
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.kills += 1
        self.start()
        return True

    def stop(self) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


def _settings(db: Database, smtp: Server) -> Settings:
    return Settings(
        database_url=db.url.render_as_string(hide_password=False), secret_key=SECRET, rule_packs=("shop",),
        detect_clock="events", detect_allowed_lateness=LATENESS, detect_sweep_seconds=0.2,
        detect_sweep_in_serve=False, holdout_share=0.2, quiet_hours="", smtp_host="127.0.0.1", smtp_port=smtp.port,
        smtp_security="none", mail_from="Example Shop <care@shop.example.com>", outbox_lease_seconds=3,
    )  # fmt: skip


def _post_until_accepted(base: str, key: str, batch: list[dict[str, Any]]) -> None:
    """Send one batch until the server says it is stored: a server killed mid-request gives no answer, or a
    refusal while it starts; the same events again are duplicates, never twice in the ledger."""
    deadline = time.monotonic() + 120
    while True:
        try:
            response = httpx.post(f"{base}/v1/events", json=batch, headers={"Authorization": f"Bearer {key}"},
                                  timeout=30)  # fmt: skip
            if response.status_code == 200:
                body = response.json()
                assert body["rejected"] == [], body
                assert body["accepted"] + body["duplicates"] == len(batch)
                return
            assert response.status_code >= 500, response.text  # never a 4xx for a valid batch
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server never took a batch"
        time.sleep(0.2)


class Killer:
    """Kills a random running target every 0.3-2 s, on a thread, until `kills` are done; `paused()` holds it while
    the test reads a settled state."""

    def __init__(self, targets: list[Process], kills: int, *, seed: int) -> None:
        self.targets, self.kills, self.done = targets, kills, 0
        self.chooser = random.Random(seed)
        self.stop, self.hold, self.turn = threading.Event(), threading.Event(), threading.Lock()
        self.failures: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="killer")

    def _run(self) -> None:
        try:
            while self.done < self.kills and not self.stop.wait(self.chooser.uniform(0.3, 2.0)):
                with self.turn:
                    alive = [t for t in self.targets if t.process is not None and not t.done]
                    if not self.hold.is_set() and alive and self.chooser.choice(alive).kill_and_restart():
                        self.done += 1
        except BaseException as exc:
            self.failures.append(exc)

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.hold.set()
        with self.turn:  # a kill under way ends, its process started again, before the block runs
            pass
        try:
            yield
        finally:
            self.hold.clear()

    def join(self) -> int:
        self.thread.join()
        if self.failures:
            raise self.failures[0]
        return self.done


@pytest.mark.timeout(900)
def test_killed_anywhere_again_and_again_nothing_is_lost_or_done_twice(
    db: Database, smtp: Server, tmp_path: Path
) -> None:
    events = list(generate_world("shop", customers=400, days=45, seed=5))
    batches = [events[start : start + 250] for start in range(0, len(events), 250)]
    settings = _settings(db, smtp)
    key = new_key(db)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in environment(settings).items() if not k.startswith("AMENDS_BROKER_")}
    env |= {"AMENDS_PORT": str(port), "AMENDS_DETECT_SWEEP_IN_SERVE": "false", "AMENDS_OUTBOX_LEASE_SECONDS": "3"}

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    server = Process("the server", [AMENDS, "serve"], env, tmp_path / "serve.log", ready=answers)
    worker = Process("the worker", [AMENDS, "worker"], env, tmp_path / "worker.log")
    now = datetime.now(UTC).replace(microsecond=0)
    desk = Process("the desk", [sys.executable, "-c", DESK, now.isoformat()], env, tmp_path / "desk.log")
    server.start()
    worker.start()
    killer = Killer([server, worker, desk], KILLS, seed=KILLS)
    killer.thread.start()
    try:
        for batch in batches:
            _post_until_accepted(base, key, batch)
        with killer.paused():
            assert _count(db, tables.events) == len({(e["source"], e["id"]) for e in events})  # each once
            wait_for(lambda: _settled(db), timeout=120, what="detection and intake to take every event")
            found_incidents = wait_stable(lambda: incidents(db))
            found_cases = wait_stable(lambda: cases(db))
        desk.start()
        wait_for(lambda: desk.done or (desk.process is not None and desk.process.poll() == 0), timeout=300,
                 what="the desk to work every case")  # fmt: skip
        desk.done = True
        kills = killer.join()  # the rest of the kills fall on the server and the worker delivering
        wait_for(lambda: _unsent(db) == 0, timeout=120, what="every message due to be delivered")
        alive = {p.name: p.process is not None and p.process.poll() is None for p in (server, worker)}
    finally:
        killer.stop.set()
        killer.join()
        codes = {p.name: p.stop() for p in (server, worker)}
    logs = "\n".join(p.log.read_text(errors="replace")[-2000:] for p in (server, worker, desk) if p.log.exists())
    assert kills == KILLS, logs
    assert server.kills > 0
    assert worker.kills > 0
    assert alive == {"the server": True, "the worker": True}, logs  # none of them stopped on its own
    assert set(codes.values()) <= {0, -signal.SIGTERM}, logs  # and each stopped when asked (uvicorn re-raises it)
    assert desk.process is not None
    assert desk.process.returncode == 0, logs

    reference, local = _embedded(tmp_path, settings, batches)
    assert incidents(db) == found_incidents  # and none came or changed after, through the kills that followed
    assert len(found_incidents) > 30
    assert found_incidents == incidents(reference)  # every incident once, every deadline fired
    assert found_cases == cases(reference)  # one case per incident, as one process makes them
    assert _one_case_each(db)
    work_open_cases(reference, local, now=now)
    assert ledger_entries(db) == ledger_entries(reference)  # one entry per grant
    assert len(ledger_entries(db)) > 10
    assert messages(db) == messages(reference)
    assert _timers(db) == _timers(reference)  # every deadline due has fired; those still ahead wait alike
    m, end = tables.messages, datetime.now(UTC)
    with db.engine.connect() as connection:
        emails = connection.execute(
            sa.select(m.c.status, m.c.provider_id, m.c.not_before).where(m.c.channel == "email")
        )
        sent = {e.provider_id for e in emails if e.status == "sent"}
        waiting = connection.execute(
            sa.select(sa.func.count()).where(m.c.channel == "email", m.c.status.not_in(("sent", "cancelled")),
                                             m.c.not_before <= end)
        ).scalar_one()  # fmt: skip
    assert waiting == 0  # what is not sent is a follow-up due later, or was cancelled (the case reopened, say)
    assert len(sent) > 50
    received = Counter(str(message["Message-ID"]) for message in smtp.mailbox.received)
    assert set(received) == sent  # every email delivered, under its own Message-ID
    again = sum(received.values()) - len(received)
    assert again <= worker.kills * settings.outbox_batch  # only a batch in flight when its worker died goes again


def _count(db: Database, table: sa.Table) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _unsent(db: Database) -> int:
    """Emails due now and not sent yet (a follow-up due days later waits)."""
    m, now = tables.messages, datetime.now(UTC)
    with db.engine.connect() as connection:
        due = sa.select(sa.func.count()).where(m.c.status == "pending", m.c.channel == "email", m.c.not_before <= now)
        return int(connection.execute(due).scalar_one())


def _settled(db: Database) -> bool:
    """Every stored event seen by detection, and every incident in a case."""
    e, cursors, i, ci = tables.events, tables.detect_cursors, tables.incidents, tables.case_incidents
    with db.engine.connect() as connection:
        last = connection.execute(sa.select(sa.func.max(e.c.seq))).scalar_one()
        seen = connection.execute(sa.select(sa.func.min(cursors.c.seq))).scalar_one()
        found = connection.execute(sa.select(sa.func.count()).select_from(i)).scalar_one()
        taken = connection.execute(sa.select(sa.func.count(sa.distinct(ci.c.incident_id)))).scalar_one()
    return seen is not None and seen >= last and found == taken


def _one_case_each(db: Database) -> bool:
    ci = tables.case_incidents
    with db.engine.connect() as connection:
        per_incident = connection.execute(sa.select(ci.c.incident_id, sa.func.count()).group_by(ci.c.incident_id))
        return all(count == 1 for _incident, count in per_incident)


def _timers(db: Database) -> list[tuple[Any, ...]]:
    """Detection's waiting deadlines, by rule and key."""
    state = tables.detect_state
    with db.engine.connect() as connection:
        rows = connection.execute(sa.select(state.c.kind, state.c.rule_id, state.c.key, state.c.due))
        return sorted(tuple(row) for row in rows)
