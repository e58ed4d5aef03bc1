"""Dependencies failing for real: the SQLite database's disk filling up, and PostgreSQL restarted under a running
server and worker. Each time: a clear error, readiness red, nothing accepted lost, no half-written batch, and the
work goes on by itself once the dependency is back. (NATS restarted: tests/test_broker_worker.py; SMTP refusing or
away: tests/test_outreach_faults.py.)"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.store import Database, tables, upgrade
from amends.web import create_app
from amends.world import generate_world
from tests.conftest import an_event, new_key, service_missing, settings_for
from tests.test_broker_worker import wait_for
from tests.test_chaos import AMENDS, Process
from tests.test_cli import _free_port
from tests.test_scale_out import environment


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB filesystem of its own (tmpfs), to fill up."""
    place = tmp_path / "small"
    place.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(place)], capture_output=True,
                             text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        service_missing("a small filesystem (tmpfs) to fill", mounted.stderr.strip() or "mount failed (needs root)")
    try:
        yield place
    finally:
        subprocess.run(["umount", "-l", str(place)], check=False)


def _stored(db: Database) -> set[str]:
    with db.engine.connect() as connection:
        return set(connection.execute(sa.select(tables.events.c.event_id)).scalars())


def test_a_full_disk_refuses_clearly_turns_readiness_red_loses_nothing_and_recovers(small_disk: Path) -> None:
    db = Database(f"sqlite:///{small_disk / 'amends.db'}")
    upgrade(db)
    filler = small_disk / "filler"
    settings = settings_for(db, sqlite_min_free_mib=1)
    try:
        with TestClient(create_app(settings, db)) as client:
            client.headers["Authorization"] = f"Bearer {new_key(db)}"
            assert client.get("/readyz").status_code == 200
            free = shutil.disk_usage(small_disk).free
            filler.write_bytes(b"\0" * (free - 1_500_000))  # what is left fills after a few batches
            accepted: set[str] = set()
            refused: list[dict[str, Any]] = []
            for number in range(0, 20_000, 200):
                batch = [an_event(n, data={"note": "x" * 400}) for n in range(number, number + 200)]
                response = client.post("/v1/events", json=batch)
                if response.status_code != 200:
                    refused = batch
                    break
                accepted |= {str(e["id"]) for e in batch}
            assert refused, "the disk never filled"
            assert response.status_code == 503
            assert "disk is full" in response.json()["reason"]
            assert accepted
            assert _stored(db) == accepted  # every accepted event, and nothing of the refused batch
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert "sqlite_min_free_mib" in ready.json()["reason"]

            filler.unlink()  # someone makes room
            assert client.get("/readyz").status_code == 200
            again = client.post("/v1/events", json=refused)
            assert again.status_code == 200, again.text
            assert _stored(db) == accepted | {str(e["id"]) for e in refused}
    finally:
        db.dispose()


def _cluster() -> tuple[str, str]:
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        service_missing("pg_ctlcluster", "PostgreSQL's cluster tools are not on PATH (Debian's postgresql-common)")
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout.split()
    if len(listed) < 2:
        service_missing("a PostgreSQL cluster to restart", "pg_lsclusters lists none")
    return listed[0], listed[1]


def test_postgres_restarted_under_a_running_server_and_worker(pg: Database, tmp_path: Path) -> None:
    version, cluster = _cluster()
    events = list(generate_world("shop", customers=300, days=40, seed=9))
    batches = [events[start : start + 300] for start in range(0, len(events), 300)]
    before, after = batches[: len(batches) // 2], batches[len(batches) // 2 :]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = settings_for(pg, rule_packs=("shop",), detect_clock="events", quiet_hours="")
    env = {k: v for k, v in environment(settings).items() if not k.startswith("AMENDS_BROKER_")}
    env = {k: v for k, v in env.items() if not k.startswith(("AMENDS_SMTP_", "AMENDS_MAIL_"))}
    env |= {"AMENDS_PORT": str(port), "AMENDS_DETECT_SWEEP_IN_SERVE": "false", "AMENDS_OUTBOX_DELIVER": "false"}
    key = new_key(pg)
    headers = {"Authorization": f"Bearer {key}"}

    def ready() -> int:
        try:
            return httpx.get(f"{base}/readyz", timeout=5).status_code
        except httpx.TransportError:
            return 0

    server = Process("the server", [AMENDS, "serve"], env, tmp_path / "serve.log", ready=lambda: ready() == 200)
    worker = Process("the worker", [AMENDS, "worker"], env, tmp_path / "worker.log")
    server.start()
    worker.start()
    accepted: set[str] = set()
    try:
        for batch in before:
            response = httpx.post(f"{base}/v1/events", json=batch, headers=headers, timeout=30)
            assert response.status_code == 200, response.text
            accepted |= {e["id"] for e in batch}
        wait_for(lambda: _count(pg, tables.cases) > 0, timeout=60, what="the worker to open cases")

        subprocess.run(["pg_ctlcluster", version, cluster, "stop", "-m", "fast"], check=True, timeout=60)
        try:
            down = httpx.post(f"{base}/v1/events", json=batches[-1], headers=headers, timeout=30)
            assert down.status_code == 503
            assert "database unavailable" in down.json()["reason"]
            not_ready = httpx.get(f"{base}/readyz", timeout=5)
            assert not_ready.status_code == 503
            for answer in (down.text, not_ready.text):  # the driver's words (host, port, user) stay in the log
                for detail in ("5432", "localhost", "127.0.0.1", "amends@", "connection"):
                    assert detail not in answer.lower(), answer
            time.sleep(2)  # the worker meets the stopped server too
        finally:
            subprocess.run(["pg_ctlcluster", version, cluster, "start"], check=True, timeout=60)

        wait_for(lambda: ready() == 200, timeout=60, what="readiness to come back by itself")
        for batch in after:
            response = httpx.post(f"{base}/v1/events", json=batch, headers=headers, timeout=30)
            assert response.status_code == 200, response.text
            accepted |= {e["id"] for e in batch}
        cases_before = _count(pg, tables.cases)
        wait_for(lambda: _count(pg, tables.cases) > cases_before, timeout=90, what="the worker to go on by itself")
        assert server.process is not None
        assert server.process.poll() is None
        assert worker.process is not None
        assert worker.process.poll() is None
    finally:
        server.stop()
        worker.stop()
    assert _stored(pg) == accepted  # nothing accepted was lost, nothing refused was kept
    assert "database unavailable" in (tmp_path / "worker.log").read_text()  # it said so, and went on
    assert "database unavailable: " in (tmp_path / "serve.log").read_text()  # with the driver's words, for operators


def _count(db: Database, table: sa.Table) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
