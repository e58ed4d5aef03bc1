"""Issue 9/10's proof: the sample world through API -> JetStream -> three `amends worker` processes -> PostgreSQL, one
worker killed with SIGKILL in the middle, gives exactly what one embedded process gives for the same events: the
same incidents, the same cases (with the same holdout draws), and, once a desk has worked every case in both, the
same ledger entries and messages, each message delivered once to a real SMTP server by the surviving workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.broker_worker import PartitionLocks
from amends.config import Settings
from amends.detect.service import Detection
from amends.events import Item, ingest_items
from amends.recover.service import Recovery
from amends.simulation import work_open_cases
from amends.store import Database, tables, upgrade
from amends.web import create_app
from amends.world import generate_world
from tests.conftest import SECRET, new_key
from tests.test_broker_worker import broker_settings, incidents, wait_for, wait_stable
from tests.test_smtp_channel import Mailbox, Server

PARTITIONS = 12
WORKERS = 3


@pytest.fixture
def smtp() -> Iterator[Server]:
    running = Server(Mailbox())
    running.start()
    yield running
    running.stop()


def settings_of(db: Database, nats_url: str, smtp: Server) -> Settings:
    """The broker settings of tests/test_broker_worker.py, with the holdout on and email to `smtp`."""
    return broker_settings(
        db, nats_url, broker_partitions=PARTITIONS, holdout_share=0.2, quiet_hours="", smtp_host="127.0.0.1",
        smtp_port=smtp.port, smtp_security="none", mail_from="Example Shop <care@shop.example.com>",
    )  # fmt: skip


def environment(settings: Settings) -> dict[str, str]:
    """The settings as a worker process reads them: AMENDS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMENDS_")}
    for name in ("database_url", "broker_url", "broker_partitions", "detect_clock", "detect_sweep_seconds",
                 "holdout_share", "smtp_host", "smtp_port", "smtp_security", "mail_from"):  # fmt: skip
        env[f"AMENDS_{name.upper()}"] = str(getattr(settings, name))
    env |= {
        "AMENDS_SECRET_KEY": SECRET,
        "AMENDS_RULE_PACKS": "shop",
        "AMENDS_DETECT_ALLOWED_LATENESS": "1h",
        "AMENDS_QUIET_HOURS": "",
        "AMENDS_LOG_LEVEL": "info",
    }
    return env


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    amends = Path(sys.executable).parent / "amends"
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(amends), "worker"], env=environment(settings), stdout=out, stderr=subprocess.STDOUT
        )


def cases(db: Database) -> list[tuple[Any, ...]]:
    """Each case by the incidents it holds (ids differ between databases; rule and key do not)."""
    c, ci, i = tables.cases, tables.case_incidents, tables.incidents
    with db.engine.connect() as connection:
        rows = connection.execute(
            sa.select(c.c.id, c.c.customer_id, c.c.origin, c.c.status, c.c.playbook, c.c.severity, c.c.held_out,
                      i.c.rule_id, i.c.key)
            .join(ci, ci.c.case_id == c.c.id).join(i, i.c.id == ci.c.incident_id)
        ).all()  # fmt: skip
    by_case: dict[int, tuple[tuple[Any, ...], list[tuple[str, str]]]] = {}
    for row in rows:
        by_case.setdefault(row.id, (tuple(row[1:7]), []))[1].append((row.rule_id, row.key))
    return sorted((*head, tuple(sorted(members))) for head, members in by_case.values())


def case_names(db: Database) -> dict[int, tuple[tuple[str, str], ...]]:
    """Each case id's name across databases: its incidents' (rule, key), sorted."""
    ci, i = tables.case_incidents, tables.incidents
    with db.engine.connect() as connection:
        rows = connection.execute(sa.select(ci.c.case_id, i.c.rule_id, i.c.key).join(i, i.c.id == ci.c.incident_id))
        names: dict[int, list[tuple[str, str]]] = {}
        for row in rows:
            names.setdefault(row.case_id, []).append((row.rule_id, row.key))
    return {case: tuple(sorted(members)) for case, members in names.items()}


def ledger_entries(db: Database) -> list[tuple[Any, ...]]:
    names, ledger = case_names(db), tables.ledger
    with db.engine.connect() as connection:
        rows = connection.execute(sa.select(ledger.c.case_id, ledger.c.kind, ledger.c.amount, ledger.c.customer_id))
        return sorted((names[row.case_id], row.kind, row.amount, row.customer_id) for row in rows)


def messages(db: Database) -> list[tuple[Any, ...]]:
    names, m = case_names(db), tables.messages
    with db.engine.connect() as connection:
        rows = connection.execute(sa.select(m.c.case_id, m.c.customer_id, m.c.channel, m.c.kind, m.c.recipient,
                                            m.c.subject))  # fmt: skip
        return sorted((names.get(row.case_id), *row[1:]) for row in rows)


def test_three_workers_one_killed_give_what_one_embedded_process_gives(
    pg: Database, nats_server: str, smtp: Server, tmp_path: Path
) -> None:
    events = list(generate_world("shop", customers=1_500, days=60, seed=21))
    batches = [events[start : start + 500] for start in range(0, len(events), 500)]
    settings = settings_of(pg, nats_server, smtp)
    logs = [tmp_path / f"worker-{n}.log" for n in range(WORKERS)]
    workers = [start_worker(settings, log) for log in logs]
    locks = PartitionLocks(pg, stream=settings.broker_stream, present=False)  # looks; not a worker
    try:
        wait_for(lambda: locks.taken() == set(range(PARTITIONS)), what="the workers to own every partition")
        with TestClient(create_app(settings, pg)) as client:
            client.headers["Authorization"] = f"Bearer {new_key(pg)}"
            for number, batch in enumerate(batches):
                response = client.post("/v1/events", json=batch)
                assert response.status_code == 200, response.text
                if number == len(batches) // 3:
                    # In the middle of the run, while the workers are busy with what was just published.
                    workers[0].send_signal(signal.SIGKILL)
                    workers[0].wait()
        unique = len({(e["source"], e["id"]) for e in events})
        wait_for(lambda: locks.taken() == set(range(PARTITIONS)), what="the survivors to take the dead one's share")
        wait_for(lambda: _count(pg, "events") == unique, timeout=180, what="every event stored")
        found_incidents = wait_stable(lambda: incidents(pg))
        found_cases = wait_stable(lambda: cases(pg))
        now = datetime.now(UTC)
        work_open_cases(pg, settings, now=now)
        wait_for(lambda: _due_email(pg) == 0, timeout=120, what="the survivors to deliver every message due")
        for survivor in workers[1:]:
            assert survivor.poll() is None, "a surviving worker stopped"
    finally:
        locks.close()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
    for survivor, log in zip(workers[1:], logs[1:], strict=True):
        assert survivor.returncode == 0, log.read_text()[-3000:]
    assert "took partition" in logs[1].read_text() + logs[2].read_text()

    reference, local = _embedded(tmp_path, settings, batches)
    assert len(found_incidents) > 100
    assert found_incidents == incidents(reference)
    assert found_cases == cases(reference)
    work_open_cases(reference, local, now=now)  # the same desk at the same time
    assert any(case[5] for case in found_cases)  # the holdout drew some: the draws are compared too
    assert ledger_entries(pg) == ledger_entries(reference)
    assert len(ledger_entries(pg)) > 20
    sent = messages(pg)
    assert sent == messages(reference)
    # Every email went out once, through two workers that shared the outbox.
    with pg.engine.connect() as connection:
        provider_ids = connection.execute(
            sa.select(tables.messages.c.provider_id).where(
                tables.messages.c.status == "sent", tables.messages.c.channel == "email"
            )
        ).scalars().all()  # fmt: skip
    received = [str(message["Message-ID"]) for message in smtp.mailbox.received]
    assert len(received) == len(set(received)) == len(provider_ids)
    assert set(received) == set(provider_ids)
    assert len(received) > 100


def _count(db: Database, table: str) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def _due_email(db: Database) -> int:
    """Emails due now and not yet sent (a follow-up is due days later)."""
    m, now = tables.messages, datetime.now(UTC)
    with db.engine.connect() as connection:
        due = sa.select(sa.func.count()).where(
            m.c.status == "pending", m.c.channel == "email", m.c.not_before <= now, m.c.next_attempt_at <= now
        )
        return int(connection.execute(due).scalar_one())


def _embedded(tmp_path: Path, settings: Settings, batches: list[list[dict[str, Any]]]) -> tuple[Database, Settings]:
    """One embedded process on SQLite fed the same events, batch by batch, and its settings."""
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    db = Database(url)
    upgrade(db)
    local = settings.model_copy(update={"broker_url": None, "database_url": url})
    detection = Detection.from_settings(db, local)
    for batch in batches:
        ingest_items(db, [Item(e) for e in batch], received_at=datetime.now(UTC), watcher=detection.detector)
    detection.detector.sweep(db)
    Recovery.from_settings(db, local).tick()
    return db, local
