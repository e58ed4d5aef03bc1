"""The command line, run as a user runs it: a real process, its output and its exit code."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from amends.errors import Unauthorized
from amends.store import Database
from tests.conftest import SECRET, an_event, count_rows


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AMENDS_")}
    return clean | {"AMENDS_DATABASE_URL": f"sqlite:///{tmp_path / 'amends.db'}", "COLUMNS": "200"}


def amends(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amends.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_init_creates_the_database_and_a_private_config(env: dict[str, str], tmp_path: Path) -> None:
    done = amends("init", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Database ready" in done.stdout
    config = tmp_path / "amends.toml"
    assert config.stat().st_mode & 0o777 == 0o600
    assert "secret_key" in config.read_text()
    assert amends("init", env=env, cwd=tmp_path).returncode == 0


def test_a_bad_setting_stops_with_one_line_naming_it(env: dict[str, str], tmp_path: Path) -> None:
    done = amends("init", env=env | {"AMENDS_PORT": "99999"}, cwd=tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("Error: AMENDS_PORT")


def test_serve_without_a_secret_key_refuses_to_start(env: dict[str, str], tmp_path: Path) -> None:
    done = amends("serve", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "AMENDS_SECRET_KEY: missing" in done.stderr


def test_ingest_reports_rejected_rows_by_line_and_exits_non_zero(env: dict[str, str], tmp_path: Path) -> None:
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    path = tmp_path / "orders.csv"
    path.write_text("order,customer,at\nO-1,C-1,2026-05-01T10:00:00Z\nO-2,C-2,garbage\nO-3,C-3,2026-05-01T12:00:00Z\n")
    args = ["ingest", str(path), "--map", "id=order", "--map", "subject=customer", "--map", "time=at"]
    args += ["--type", "order.placed", "--source", "shop", "--rejects", str(tmp_path / "rejects.jsonl")]
    done = amends(*args, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "Rejected rows" in done.stdout
    rejected = orjson.loads((tmp_path / "rejects.jsonl").read_bytes())
    assert (rejected["line"], rejected["field"]) == (3, "time")
    assert rejected["reason"].startswith("expected an RFC 3339 timestamp")
    again = amends(*args[:-2], env=env, cwd=tmp_path)
    assert "│    3 │        0 │          2 │        1 │" in again.stdout


def test_ingest_refuses_a_bad_mapping_before_reading(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    done = amends("ingest", str(path), "--map", "customer=a", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "--map" in done.stderr


def test_keys_are_shown_once_listed_without_secrets_and_revocable(env: dict[str, str], tmp_path: Path) -> None:
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    created = amends("keys", "create", "shop", "--scope", "events:write", env=env, cwd=tmp_path)
    assert created.returncode == 0
    key = created.stdout.strip()
    assert key.startswith("amends_")
    listed = amends("keys", "list", env=env, cwd=tmp_path).stdout
    assert "shop" in listed
    secret = re.fullmatch(r"amends_[0-9a-f]{12}_([A-Za-z0-9_-]{43})", key)
    assert secret is not None
    assert secret.group(1) not in listed  # the whole secret (it may itself contain "_")
    assert amends("keys", "revoke", "shop", env=env, cwd=tmp_path).returncode == 0
    assert amends("keys", "revoke", "shop", env=env, cwd=tmp_path).returncode == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    env = env | {"AMENDS_SECRET_KEY": SECRET, "AMENDS_PORT": str(port), "AMENDS_LOG_LEVEL": "warning"}
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    key = amends("keys", "create", "shop", env=env, cwd=tmp_path).stdout.strip()
    process = subprocess.Popen([sys.executable, "-m", "amends.cli", "serve"], env=env, cwd=tmp_path)
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
        yield base, {"Authorization": f"Bearer {key}"}
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_serve_answers_over_http(server: tuple[str, dict[str, str]]) -> None:
    base, headers = server
    response = httpx.post(f"{base}/v1/events", json=[an_event(n) for n in range(5)], headers=headers)
    assert response.json() == {"accepted": 5, "duplicates": 0, "rejected": []}
    timeline = httpx.get(f"{base}/v1/customers/C-1/timeline", headers=headers).json()
    assert [e["event"]["id"] for e in timeline["events"]] == ["evt-1"]


@pytest.mark.slow
def test_a_killed_ingest_loses_nothing_it_reported_and_a_rerun_stores_no_duplicate(
    env: dict[str, str], tmp_path: Path
) -> None:
    rows = 60_000
    path = tmp_path / "big.jsonl"
    with path.open("wb") as file:
        for n in range(rows):
            file.write(orjson.dumps(an_event(n, subject=f"C-{n % 997}")) + b"\n")
    env = env | {"AMENDS_INGEST_COMMIT_ROWS": "2000"}
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "amends.cli", "ingest", str(path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    reported = 0
    for line in process.stdout:
        if line.startswith("stored:"):
            reported = int(line.split()[1])
            if reported >= 10_000:
                break
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    process.stdout.close()
    db = Database(env["AMENDS_DATABASE_URL"])
    try:
        assert 10_000 <= reported <= count_rows(db, "events") < rows
        rerun = amends("ingest", str(path), env=env, cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert count_rows(db, "events") == rows
    finally:
        db.dispose()


def test_rules_check_lists_good_rules_and_reports_every_problem_with_exit_2(
    env: dict[str, str], tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "shop.yaml").write_text(
        "rules:\n  - id: long-delay\n    kind: match\n    on: flight.arrived\n    where: {data.delay: {gte: 180}}\n"
    )
    done = amends("rules", "check", str(rules), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 rules ready" in done.stdout
    assert "long-delay" in done.stdout

    bad = "rules:\n  - id: x\n    kind: count\n    on: a\n    at_least: 3\n    within: 7 days\n"
    (rules / "bad.yml").write_text(bad)
    done = amends("rules", "check", str(rules), env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert f"{rules / 'bad.yml'}:6: rules[0].within: expected a duration" in done.stderr
    assert "no rule was loaded" in done.stderr

    missing = amends("rules", "check", str(tmp_path / "nowhere"), env=env, cwd=tmp_path)
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr


_DETECT_RULES = """\
rules:
  - id: late-delivery
    kind: absence
    after: order.placed
    expect: order.delivered
    key: data.order_id
    deadline: data.promised_by
  - id: big-order
    kind: match
    on: order.placed
    where: {data.total: {gte: 100}}
"""


def _orders(path: Path, *, promised_in: timedelta) -> Path:
    # Placed an hour ago, promised `promised_in` from now (by the wall clock).
    now = datetime.now(UTC)
    placed, promised = (now - timedelta(hours=1)).isoformat(), (now + promised_in).isoformat()
    delivered = (now - timedelta(minutes=30)).isoformat()
    lines = [
        an_event(1, time=placed, data={"order_id": "O-1", "total": 250, "promised_by": promised}),
        an_event(2, time=placed, data={"order_id": "O-2", "total": 20, "promised_by": promised}),
        an_event(3, type="order.delivered", time=delivered, data={"order_id": "O-2"}),
    ]
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    return path


def _incidents(tmp_path: Path) -> list[tuple[str, str]]:
    db = Database(f"sqlite:///{tmp_path / 'amends.db'}")
    try:
        with db.engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT rule_id, key FROM incidents ORDER BY rule_id").all()
    finally:
        db.dispose()
    return [(rule_id, key) for rule_id, key in rows]


def test_ingest_evaluates_the_rules_and_the_worker_fires_the_deadlines(env: dict[str, str], tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "shop.yaml").write_text(_DETECT_RULES)
    env = env | {
        "AMENDS_RULES_DIR": str(rules),
        "AMENDS_DETECT_SWEEP_SECONDS": "0.2",
        "AMENDS_DETECT_ALLOWED_LATENESS": "0s",
    }
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    orders = _orders(tmp_path / "orders.jsonl", promised_in=timedelta(seconds=8))
    done = amends("ingest", str(orders), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Detection: 1 incident(s) opened" in done.stdout
    assert "Recovery: 1 case(s) opened" in done.stdout
    assert [rule for rule, _ in _incidents(tmp_path)] == ["big-order"]

    worker = subprocess.Popen(
        [sys.executable, "-m", "amends.cli", "worker"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        database = Database(f"sqlite:///{tmp_path / 'amends.db'}")
        while count_rows(database, "case_incidents") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the worker fires the deadline, then takes the incident into a case
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    finally:
        worker.kill()
        worker.wait()
    assert worker.returncode == 0
    assert "2 rules" in out
    assert _incidents(tmp_path) == [("big-order", _incidents(tmp_path)[0][1]), ("late-delivery", "O-1")]
    assert count_rows(database, "case_incidents") == 2


def test_ingest_with_broken_rules_stores_nothing_and_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "shop.yaml").write_text(_DETECT_RULES.replace("kind: match", "kind: matches"))
    env = env | {"AMENDS_RULES_DIR": str(rules)}
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    done = amends("ingest", str(_orders(tmp_path / "orders.jsonl", promised_in=timedelta())), env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "shop.yaml:9" in done.stderr
    assert "kind" in done.stderr
    assert count_rows(Database(f"sqlite:///{tmp_path / 'amends.db'}"), "events") == 0


@pytest.mark.slow
def test_the_demo_builds_a_worked_world_and_serves_the_console_to_its_logins(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    env = env | {"AMENDS_PORT": str(port), "AMENDS_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [sys.executable, "-m", "amends.cli", "demo", "--customers", "120", "--days", "20"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not any("serving at" in line for line in lines):
            line = process.stdout.readline()
            assert line, f"amends demo exited: {''.join(lines)}"
            lines.append(line)
        text = "".join(lines)
        counts = {m[0].strip(): int(m[1].replace(",", "")) for m in re.findall(r"│ ([a-z ]+?)\s+│ ([\d,]+)", text)}
        assert counts["events"] > 0
        assert counts["cases"] > 0
        assert 0 < counts["apologies sent"] <= counts["cases"]
        assert counts["feedback"] > 0
        assert "What recovery does" in text  # twenty days: every 30-day window still open, and it says so
        assert "nothing measured yet" in text
        password = re.search(r"the password (demo-\S+?):", text).group(1)  # type: ignore[union-attr]
        key = text.split("An API key with every right: ")[1].split()[0]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"{base}/v1/incidents", headers={"Authorization": f"Bearer {key}"}, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the demo server did not answer"
                time.sleep(0.2)
        assert {incident["rule_id"].split("-")[0] for incident in response.json()["incidents"]} <= {
            "shop",
            "air",
            "car",
        }
        # Live now: a flight that landed ten minutes ago, hours late, is found at once, however quiet the world's
        # last hour was (the history was read on the events' clock; the server runs on the wall clock).
        landed = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
        arrival = {"specversion": "1.0", "id": "live-1", "source": "https://airline.example.com/operations",
                   "type": "flight.arrived", "time": landed, "subject": "P-LIVE",
                   "data": {"flight_no": "EX1", "booking_ref": "LIVE1", "delay_minutes": 300}}  # fmt: skip
        sent = httpx.post(f"{base}/v1/events", json=[arrival], headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert sent.json()["accepted"] == 1
        found = httpx.get(
            f"{base}/v1/incidents",
            params={"customer": "P-LIVE"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()["incidents"]
        assert [incident["rule_id"] for incident in found] == ["air-long-delay"]
        with httpx.Client(base_url=base, timeout=10) as browser:
            page = browser.get("/console/login")
            nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            login = {"login": "ana", "password": password, "nonce": nonce, "next": "/console"}
            assert browser.post("/console/login", data=login).status_code == 303
            queue = browser.get("/console")
            assert queue.status_code == 200
            assert "/console/cases/" in queue.text
            assert "airport" in queue.text
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_backfill_finds_in_stored_history_what_was_stored_without_detection(
    env: dict[str, str], tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "shop.yaml").write_text(_DETECT_RULES)
    env = env | {"AMENDS_RULES_DIR": str(rules)}
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    orders = _orders(tmp_path / "orders.jsonl", promised_in=timedelta(minutes=-10))
    stored = amends("ingest", str(orders), env=env | {"AMENDS_DETECT_ENABLED": "false"}, cwd=tmp_path)
    assert stored.returncode == 0, stored.stderr
    assert _incidents(tmp_path) == []

    done = amends("backfill", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Backfill of 3 events" in done.stdout
    assert "2 incidents opened" in done.stdout
    assert sorted(rule for rule, _ in _incidents(tmp_path)) == ["big-order", "late-delivery"]
    again = amends("backfill", env=env, cwd=tmp_path)
    assert "0 incidents opened" in again.stdout

    bad = amends("backfill", "--since", "last tuesday", env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert "--since" in bad.stderr


def test_staff_add_with_a_key_lets_that_person_act_with_their_role(env: dict[str, str], tmp_path: Path) -> None:
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    added = amends(
        "staff", "add", "ana", "--name", "Ana", "--role", "agent", "--team", "air", "--key", env=env, cwd=tmp_path
    )
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("amends_")
    assert "Ana" in amends("staff", "list", env=env, cwd=tmp_path).stdout
    again = amends("staff", "add", "ana", "--name", "Ana", env=env, cwd=tmp_path)
    assert again.returncode == 1
    assert "exists" in again.stderr
    bad_role = amends("staff", "add", "bo", "--name", "Bo", "--role", "boss", env=env, cwd=tmp_path)
    assert bad_role.returncode == 2
    assert "role" in bad_role.stderr
    with Database(f"sqlite:///{tmp_path / 'amends.db'}").unit_of_work() as uow:
        from amends.access import authenticate

        assert authenticate(uow, key).staff_id == "ana"
    # One key in use at a time: --renew revokes it and makes another, for the configured lifetime.
    assert amends("staff", "key", "ana", env=env, cwd=tmp_path).returncode == 1
    renewed = amends("staff", "key", "ana", "--renew", env=env | {"AMENDS_STAFF_KEY_LIFETIME": "2h"}, cwd=tmp_path)
    assert renewed.returncode == 0, renewed.stderr
    assert "until " in renewed.stderr
    with Database(f"sqlite:///{tmp_path / 'amends.db'}").unit_of_work() as uow:
        with pytest.raises(Unauthorized, match="revoked"):
            authenticate(uow, key)
        new = authenticate(uow, renewed.stdout.strip())
    assert new.expires_at is not None
    assert timedelta(hours=1) < new.expires_at - datetime.now(UTC) <= timedelta(hours=2)
    assert "expires" in amends("keys", "list", env=env, cwd=tmp_path).stdout


def test_staff_password_sets_a_console_login_and_refuses_a_short_one(env: dict[str, str], tmp_path: Path) -> None:
    from amends.recover.staff import check_login

    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    assert amends("staff", "add", "ana", "--name", "Ana", env=env, cwd=tmp_path).returncode == 0
    short = subprocess.run(
        [sys.executable, "-m", "amends.cli", "staff", "password", "ana", "--stdin"],
        env=env, cwd=tmp_path, input="too short\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert short.returncode == 2
    assert "password: at least 12 characters" in short.stderr
    done = subprocess.run(
        [sys.executable, "-m", "amends.cli", "staff", "password", "ana", "--stdin"],
        env=env, cwd=tmp_path, input="a long enough passphrase\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    database = Database(f"sqlite:///{tmp_path / 'amends.db'}")
    with database.unit_of_work() as uow:
        assert check_login(uow, "ana", "too short") is None
        member = check_login(uow, "ana", "a long enough passphrase")
        stored = uow.execute(sa.text("SELECT password_hash FROM staff WHERE id = 'ana'")).scalar_one()
    database.dispose()
    assert member is not None
    assert member.id == "ana"
    assert stored.startswith("$argon2id$")  # a salted one-way hash (ASVS 2.4.1), never the password
    assert "passphrase" not in stored


def test_playbooks_and_remedies_check_report_problems_by_line_and_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    shipped = amends("playbooks", "check", env=env, cwd=tmp_path)
    assert shipped.returncode == 0, shipped.stderr
    assert "long-delay" in shipped.stdout
    broken = tmp_path / "playbooks.yaml"
    broken.write_text("playbooks:\n  - id: default\n    steps:\n      - step: apologise\n        due: 1h\n")
    done = amends("playbooks", "check", str(broken), env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert f"{broken}:4:" in done.stderr
    assert "apologise" in done.stderr
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: r, kind: match, on: a.b, playbook: nowhere}\n")
    unknown = amends("playbooks", "check", "--rules", str(rules), env=env, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "nowhere" in unknown.stderr
    assert amends("remedies", "check", env=env, cwd=tmp_path).returncode == 0
    policy = tmp_path / "remedies.yaml"
    policy.write_text("currency: EUR\nkinds:\n  credit: {label: Credit, unit: EUR, cash_per_unit: -1}\n")
    refused = amends("remedies", "check", str(policy), env=env, cwd=tmp_path)
    assert refused.returncode == 2
    assert f"{policy}:3:" in refused.stderr
