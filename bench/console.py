"""Benchmark of the staff console: server time per page with PostgreSQL holding 1M events, 100k incidents and 50k
cases (issue 8: p95 < 300 ms).

The data is written by PostgreSQL itself (INSERT ... SELECT over generate_series, in a fresh database created and
dropped by the script), shaped like a company's: 100,000 customers with profile events, the shipped rules'
incidents, cases with their five steps (a fifth of them open), messages, ledger entries, feedback, approvals, and
44 staff in four teams. Then a real server on loopback (uvicorn, one process) is asked for each page by a client
holding a console session, the page's ids drawn at random, after a warm-up; the time is from the request to the
last byte of the answer. Reported per page: p50, p95 and max over the requests, and how many were asked.

    .venv/bin/python bench/console.py                       # AMENDS_TEST_POSTGRES_URL, else local amends_test
    .venv/bin/python bench/console.py --requests 40 --scale 0.1   # a quick run on a tenth of the data
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn
from rich.console import Console
from rich.table import Table

from amends.config import Settings
from amends.recover.roles import Role
from amends.recover.staff import add_staff, set_password
from amends.store import Database, upgrade
from amends.web import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import DEFAULT_POSTGRES_URL, fresh_database  # bench/ is on the path when a script here runs

TARGET_P95_MS = 300.0
FIRST_VIEW = "dashboard, first view after start (12 weeks)"
PASSWORD = "benchmark passphrase 1"
TEAMS = ("airport", "web-shop", "workshop", "support")
RULES = (
    ("air-long-delay", "long-delay", "airport"), ("air-flight-cancelled", "cancelled-flight", "airport"),
    ("air-delayed-bag", "delayed-bag", "airport"), ("shop-late-delivery", "late-delivery", "web-shop"),
    ("shop-damaged-item", "damaged-item", "web-shop"), ("shop-not-delivered", "lost-order", "web-shop"),
    ("car-job-late", "job-late", "workshop"), ("car-rework", "rework", "workshop"),
)  # fmt: skip
out = Console(highlight=False, width=140)


def load(db: Database, scale: float) -> dict[str, int]:
    """Write the company's history with PostgreSQL's own generate_series; returns the row counts."""
    customers = int(100_000 * scale)
    events = int(1_000_000 * scale)
    incidents = int(100_000 * scale)
    cases = int(50_000 * scale)
    now = datetime.now(UTC)
    with db.unit_of_work(writes=True) as uow:
        for number in range(40):
            team = TEAMS[number % 4]
            add_staff(uow, f"agent{number:02d}", name=f"Agent {number:02d}", role=Role.AGENT, team=team, now=now)
        for team in TEAMS:
            add_staff(uow, f"lead-{team}", name=f"Lead {team}", role=Role.LEAD, team=team, now=now)
        add_staff(uow, "boss", name="Boss", role=Role.MANAGER, now=now)
        for staff_id in ("agent00", "boss"):
            set_password(uow, staff_id, PASSWORD, now=now)
        uow.commit()
    rules = ", ".join(f"('{rule}', '{playbook}', '{team}')" for rule, playbook, team in RULES)
    rule_ids = ", ".join(f"'{rule}'" for rule, _playbook, _team in RULES)
    statements = [
        f"""INSERT INTO customers (id, created_at)
            SELECT 'B-' || lpad(n::text, 6, '0'), now() - interval '400 days' FROM generate_series(1, {customers}) n""",
        # A profile event per customer, then the rest of the history.
        f"""INSERT INTO events (dedup_key, source, event_id, type, time, subject, data, received_at)
            SELECT 'p' || n, 'https://crm.example', 'p-' || n, 'customer.profile', now() - interval '400 days',
                   'B-' || lpad(n::text, 6, '0'),
                   jsonb_build_object('name', 'Customer ' || n, 'email', 'c' || n || '@example.com', 'language', 'en'),
                   now() - interval '400 days'
            FROM generate_series(1, {customers}) n""",
        f"""INSERT INTO events (dedup_key, source, event_id, type, time, subject, data, received_at)
            SELECT 'e' || n, 'https://shop.example', 'e-' || n,
                   (ARRAY['order.placed', 'order.delivered', 'support.contact', 'flight.arrived'])[1 + n % 4],
                   now() - (n % 259200) * interval '1 minute', 'B-' || lpad((1 + n % {customers})::text, 6, '0'),
                   jsonb_build_object('order_id', 'O-' || n, 'total', (n % 500) + 0.99), now()
            FROM generate_series(1, {events - customers}) n""",
        f"""INSERT INTO incidents (rule_id, key, customer_id, severity, playbook, status, failure_at, detected_at,
                                   detected_by, facts)
            SELECT r.rule, 'K-' || n, 'B-' || lpad((1 + n % {customers})::text, 6, '0'), 1 + n % 5, r.playbook,
                   'open', now() - (n % 259200) * interval '1 minute', now() - (n % 259200) * interval '1 minute',
                   'stream', jsonb_build_object('data', jsonb_build_object('order_id', 'O-' || n, 'delay_minutes',
                   60 + n % 600))
            FROM generate_series(1, {incidents}) n
            JOIN (VALUES {rules}) AS r(rule, playbook, team)
              ON r.rule = (ARRAY[{rule_ids}])[1 + n % {len(RULES)}]""",
        f"""INSERT INTO cases (customer_id, origin, status, playbook, severity, fault, owner_id, team, acknowledged_at,
                               opened_at, resolved_at, closed_at, first_contact_at, customer_spoke_at, reopened)
            SELECT i.customer_id, CASE WHEN c % 3 = 0 THEN 'reactive' ELSE 'proactive' END,
                   CASE WHEN c % 5 = 0 THEN 'open' WHEN c % 5 = 1 THEN 'resolved' ELSE 'closed' END,
                   i.playbook, i.severity, 'company', 'agent' || lpad((c % 40)::text, 2, '0'), r.team,
                   i.detected_at + interval '2 hours', i.detected_at,
                   CASE WHEN c % 5 = 0 THEN NULL ELSE i.detected_at + interval '2 days' END,
                   CASE WHEN c % 5 > 1 THEN i.detected_at + interval '9 days' END,
                   i.detected_at + interval '3 hours', NULL, 0
            FROM generate_series(1, {cases}) c
            JOIN incidents i ON i.id = 2 * c - 1
            JOIN (VALUES {rules}) AS r(rule, playbook, team) ON r.rule = i.rule_id""",
        """INSERT INTO case_incidents (incident_id, case_id, joined_at)
            SELECT i.id, (i.id + 1) / 2, i.detected_at FROM incidents i
            WHERE (i.id + 1) / 2 <= (SELECT max(id) FROM cases)""",
        """INSERT INTO case_steps (case_id, position, kind, title, due_at, completed_at, completed_by)
            SELECT c.id, s.position, s.kind, s.title,
                   CASE WHEN s.position <= 3 THEN c.opened_at + s.position * interval '6 hours' END,
                   CASE WHEN c.status <> 'open' OR s.position = 1 AND c.id % 2 = 0
                        THEN c.opened_at + s.position * interval '5 hours' END,
                   CASE WHEN c.status <> 'open' OR s.position = 1 AND c.id % 2 = 0 THEN c.owner_id END
            FROM cases c CROSS JOIN (VALUES
                (1, 'empathise', 'Apologise, naming what happened'), (2, 'take_ownership', 'Take ownership'),
                (3, 'lessen_inconvenience', 'Lessen the inconvenience'), (4, 'manage_memory', 'Follow up'),
                (5, 'extend_experience', 'Extend the experience')) AS s(position, kind, title)""",
        """INSERT INTO messages (key, case_id, customer_id, channel, kind, recipient, subject, text, headers, status,
                                 attempts, not_before, next_attempt_at, created_at, sent_at)
            SELECT 'apology:' || c.id, c.id, c.customer_id, 'email', 'apology', 'someone@example.com', 'We are sorry',
                   'Dear customer, we are sorry about what happened.', '{}'::jsonb, 'sent', 1, c.opened_at,
                   c.opened_at, c.opened_at + interval '3 hours', c.opened_at + interval '3 hours'
            FROM cases c WHERE c.status <> 'open' OR c.id % 2 = 0""",
        """INSERT INTO ledger (entry_key, case_id, slot, customer_id, incident_id, kind, amount, unit, cash_value,
                               policy, granted_by, at)
            SELECT 'grant:' || c.id, c.id, 'incident-' || (2 * c.id - 1), c.customer_id, 2 * c.id - 1, 'voucher',
                   2000, 'EUR', 1200, 'discretion', c.owner_id, c.opened_at + interval '4 hours'
            FROM cases c WHERE c.id % 2 = 1""",
        """INSERT INTO approvals (case_id, slot, incident_id, kind, amount, cash_value, policy, status, requested_by,
                                  requested_at)
            SELECT c.id, 'incident-' || (2 * c.id), 2 * c.id, 'voucher', 15000, 9000, 'discretion', 'pending',
                   c.owner_id, c.opened_at + interval '5 hours'
            FROM cases c WHERE c.status = 'open' AND c.id % 97 = 0""",
        f"""INSERT INTO feedback (dedup_key, customer_id, channel, text, rating, scale, received_at, created_at,
                                  updated_at, spam, spam_score, sentiment, sentiment_score, topic, urgency, reasons,
                                  model, route, due_at, responded_at)
            SELECT 'f' || n, 'B-' || lpad((1 + n * 7 % {customers})::text, 6, '0'), 'page',
                   'The parcel came late and nobody told me why.', 1 + n % 5, 'csat',
                   now() - (n % 86400) * interval '1 minute', now(), now(), false, 0.01,
                   (ARRAY['negative', 'neutral', 'positive'])[1 + n % 3], 0.5, 'delivery', 'normal',
                   '{{"sentiment": [{{"feature": "late", "source": "model", "weight": -1.2}}]}}'::jsonb,
                   'fast 2', 'none',
                   now() - (n % 86400) * interval '1 minute' + interval '1 day',
                   CASE WHEN n % 4 = 0 THEN NULL ELSE now() - (n % 86400) * interval '1 minute' + interval '3 hours' END
            FROM generate_series(1, {int(40_000 * scale)}) n""",
    ]
    with db.engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
        connection.execute(sa.text("ANALYZE"))
    counts = {}
    with db.engine.connect() as connection:
        for table in ("events", "incidents", "cases", "case_steps", "messages", "ledger", "feedback", "approvals"):
            counts[table] = int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    return counts


def serve(settings: Settings, db: Database) -> tuple[uvicorn.Server, threading.Thread]:
    app = create_app(settings, db)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread


def session(base: str, who: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/console/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    done = client.post("/console/login", data={"login": who, "password": PASSWORD, "nonce": nonce.group(1)})
    assert done.status_code == 303, done.text
    return client


def timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default=os.environ.get("AMENDS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--scale", type=float, default=1.0, help="share of the full data (1M events)")
    parser.add_argument("--requests", type=int, default=100, help="requests per page")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    args = parser.parse_args(argv)
    rng = random.Random(1)
    with fresh_database("postgresql", args.workdir, args.postgres_url) as url:
        db = Database(url)
        upgrade(db)
        started = time.perf_counter()
        counts = load(db, args.scale)
        out.print(
            f"loaded in {time.perf_counter() - started:.0f} s: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        settings = Settings(
            database_url=url, secret_key="bench-secret-key-long-enough-0123456789", port=port,  # type: ignore[arg-type]
            detect_sweep_in_serve=False, rule_packs=("airline", "shop", "car_service"),
            console_login_rate_limit="100/minute",
        )  # fmt: skip
        server, thread = serve(settings, db)
        base = f"http://127.0.0.1:{port}"
        try:
            rows = measure(base, db, rng, args.requests)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            db.dispose()
    table = Table("page", "who", "requests", "p50 ms", "p95 ms", "max ms", "p95 / target",
                  title=f"Console server time per page, PostgreSQL, {counts['events']:,} events, "
                  f"{counts['incidents']:,} incidents, {counts['cases']:,} cases")  # fmt: skip
    worst = 0.0
    for name, who, times in rows:
        p50, p95 = statistics.median(times), _p95(times)
        if name != FIRST_VIEW:
            worst = max(worst, p95)
        table.add_row(
            name, who, str(len(times)), f"{p50:.1f}", f"{p95:.1f}", f"{max(times):.1f}", f"{p95 / TARGET_P95_MS:.2f}"
        )
    out.print(table)
    verdict = "MET" if worst < TARGET_P95_MS else "NOT MET"
    out.print(
        f"{verdict}: p95 < {TARGET_P95_MS:.0f} ms on every page (worst {worst:.1f} ms; the dashboard's first view"
    )
    out.print(f"after a start, one request a process and span, took {rows[0][2][0]:.0f} ms and is not counted)")
    return 0


def measure(base: str, db: Database, rng: random.Random, requests: int) -> list[tuple[str, str, list[float]]]:
    with db.engine.connect() as connection:
        open_cases = [r[0] for r in connection.execute(sa.text("SELECT id FROM cases WHERE status = 'open'"))]
        agent_cases = [r[0] for r in connection.execute(
            sa.text("SELECT id FROM cases WHERE status = 'open' AND team = 'airport'"))]  # fmt: skip
        customers = [r[0] for r in connection.execute(sa.text("SELECT customer_id FROM cases"))]
    manager, agent = session(base, "boss"), session(base, "agent00")
    pages: list[tuple[str, str, httpx.Client, object]] = [
        ("queue", "agent", agent, lambda: "/console"),
        ("queue, mine", "agent", agent, lambda: "/console?view=mine"),
        ("queue", "manager", manager, lambda: "/console"),
        ("queue, page 20", "manager", manager, lambda: "/console?offset=1000"),
        ("queue, overdue, one rule", "manager", manager, lambda: "/console?overdue=1&rule=air-long-delay"),
        ("case", "agent", agent, lambda: f"/console/cases/{rng.choice(agent_cases)}"),
        ("case", "manager", manager, lambda: f"/console/cases/{rng.choice(open_cases)}"),
        ("customer story", "manager", manager, lambda: f"/console/customers/{rng.choice(customers)}"),
        ("feedback inbox", "agent", agent, lambda: "/console/feedback"),
        ("approvals", "manager", manager, lambda: "/console/approvals"),
        ("ledger", "manager", manager, lambda: "/console/ledger"),
        ("rules", "agent", agent, lambda: "/console/rules"),
        ("dashboard, later views", "manager", manager, lambda: "/console/dashboard"),
    ]
    rows = []
    # The dashboard sums whole tables: once per process and span, then in the background once a minute while the
    # last one is shown. The first view after a start waits for it; that one request is reported on its own.
    rows.append((FIRST_VIEW, "manager", [timed(manager, "/console/dashboard")]))
    for name, who, client, path in pages:
        for _ in range(3):
            timed(client, path())  # type: ignore[operator]
        rows.append((name, who, [timed(client, path()) for _ in range(requests)]))  # type: ignore[operator]
    return rows


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


if __name__ == "__main__":
    raise SystemExit(main())
