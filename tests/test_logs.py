"""Logs: every request has an id, echoed in X-Request-ID and named in its log lines; a served process writes one
JSON line per request, with no query string and no signed token; secrets never reach a log, even inside an
exception's text."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.config import Settings
from amends.logs import MASK, configure_logging, secrets_of
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import SECRET, settings_for
from tests.test_cli import _free_port, amends, env

__all__ = ["env"]  # the fixture, shared with test_cli


def test_each_response_names_its_request_and_a_sane_caller_id_is_kept(db: Database) -> None:
    with TestClient(create_app(settings_for(db), db)) as client:
        made = client.get("/healthz")
        kept = client.get("/healthz", headers={"X-Request-ID": "edge-7f3a:42"})
        insane = client.get("/healthz", headers={"X-Request-ID": "x" * 300})
        error = client.get("/v1/cases/1")  # 401: errors carry it too
    assert len(made.headers["X-Request-ID"]) == 32
    assert kept.headers["X-Request-ID"] == "edge-7f3a:42"
    assert len(insane.headers["X-Request-ID"]) == 32
    assert error.status_code == 401
    assert len(error.headers["X-Request-ID"]) == 32


def test_a_served_process_logs_one_json_line_per_request_without_tokens_or_queries(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    env = env | {"AMENDS_SECRET_KEY": SECRET, "AMENDS_PORT": str(port), "AMENDS_LOG_FORMAT": "json"}
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "amends.cli", "serve"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "amends serve exited"
            assert time.monotonic() < deadline, "amends serve did not become ready"
            time.sleep(0.1)
        httpx.get(f"{base}/healthz?probe=secret-looking-query", headers={"X-Request-ID": "probe-1"})
        httpx.get(f"{base}/f/signed.token-value-1234", headers={"X-Request-ID": "probe-2"})
        httpx.get(f"{base}/u/another.signed-token-5678", headers={"X-Request-ID": "probe-3"})
        # A token followed by more path (no route matches, or a redirect), and a path forging a line of its own.
        httpx.get(f"{base}/f/third.signed-token-9012/", headers={"X-Request-ID": "probe-4"})
        httpx.get(f"{base}/u/fourth.signed-token-3456/x", headers={"X-Request-ID": "probe-5"})
        forged = "/v1/x%0a2026-11-24 INFO amends.access [forged] POST /console/login 200"
        httpx.get(f"{base}{forged}", headers={"X-Request-ID": "probe-6"})
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=10)
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines, err
    access = {line["request_id"]: line for line in lines if line["logger"] == "amends.access" and "request_id" in line}
    assert access["probe-1"]["path"] == "/healthz"
    assert access["probe-1"]["status"] == 200
    assert access["probe-2"]["path"] == "/f/{token}"
    assert access["probe-3"]["path"] == "/u/{token}"
    assert access["probe-4"]["path"] == "/f/{token}/…"
    assert access["probe-5"]["path"] == "/u/{token}/…"
    assert access["probe-6"]["path"].startswith("/v1/x\\n2026-11-24 INFO")  # the newline as an escape
    assert all(line["level"] in ("info", "warning", "error", "debug") for line in lines)
    leaks = ("secret-looking-query", "signed.token-value-1234", "another.signed-token-5678", "third.signed-token-9012",
             "fourth.signed-token-3456", SECRET)  # fmt: skip
    for leak in leaks:
        assert leak not in err


def test_secrets_are_masked_in_messages_and_in_exceptions(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(
        secret_key=SECRET,
        database_url="postgresql+psycopg://amends:db-pass-w0rd%40x@db.internal:5432/amends",
        broker_url="nats://worker:nats-pass-w0rd@nats.internal:4222",
    )
    # The database password as it is (db-pass-w0rd@x) and as the URL writes it, percent-encoded.
    assert set(secrets_of(settings)) == {SECRET, "db-pass-w0rd@x", "db-pass-w0rd%40x", "nats-pass-w0rd"}
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(settings)
        log = logging.getLogger("amends.test")
        log.warning("connecting to %s with key %s", settings.database_url, SECRET)
        try:
            raise ConnectionError(f"could not reach {settings.broker_url}")
        except ConnectionError:
            log.exception("broker down")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "db.internal" in err
    assert "nats.internal" in err
    assert err.count(MASK) == 3  # the URL in the message, the key, the URL in the exception
    for secret in (SECRET, "db-pass-w0rd", "nats-pass-w0rd"):
        assert secret not in err


def test_a_failed_statement_never_carries_its_values_into_an_error_or_a_log(db: Database) -> None:
    """A driver error that is not translated (and so may be logged with its traceback) names the statement, never
    the customers' data bound to it."""
    with pytest.raises(sa.exc.DBAPIError) as caught, db.engine.connect() as connection:
        connection.execute(
            sa.text("SELECT no_such_column FROM events WHERE subject = :who"), {"who": "jane@example.org"}
        )
    assert "no_such_column" in str(caught.value)
    assert "jane@example.org" not in str(caught.value)


def test_a_constraint_the_database_enforces_is_a_409_that_names_no_table(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A write the database refuses (a race two requests lost to each other) is a Conflict; the caller hears what
    happened, and only the log has the constraint's table and columns."""
    app = create_app(settings_for(db), db)

    @app.post("/test/twice")
    def twice() -> None:
        row = {"id": "dup", "name": "Dup", "role": "agent", "active": True, "created_at": datetime.now(UTC)}
        with db.unit_of_work(writes=True) as uow:
            uow.execute(sa.insert(tables.staff).values(row))
            uow.execute(sa.insert(tables.staff).values(row))
            uow.commit()

    with caplog.at_level(logging.WARNING, logger="amends"), TestClient(app) as client:
        answer = client.post("/test/twice")
    assert answer.status_code == 409
    body = answer.json()
    assert body["error"] == "Conflict"
    assert "nothing of this was stored" in body["reason"]
    assert "staff" not in answer.text
    assert "constraint" not in answer.text.lower()
    assert any("answered 409" in r.getMessage() and "staff" in r.getMessage() for r in caplog.records)
    with db.unit_of_work() as uow:
        assert uow.execute(sa.select(sa.func.count()).select_from(tables.staff)).scalar_one() == 0
