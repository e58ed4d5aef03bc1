"""Benchmark of outreach delivery: messages/s from the outbox to a local SMTP sink, beside a bare smtplib ceiling.

An aiosmtpd server on 127.0.0.1 runs in a process of its own (so it does not share a GIL with the senders) and
counts what it receives by Message-ID. The messages are N apologies rendered from the shipped template
`shop-late-delivery-apology` (text and HTML) for N customers, each with a List-Unsubscribe link. Against the
sink, in one run:

- the ceiling: a bare `smtplib.SMTP` loop sending N prebuilt `EmailMessage`s over one reused connection. The
  emails are what `SmtpChannel.compose` makes of the same messages, built before the clock starts;
  `send_message` still flattens each one while timed, as it does in the channel;
- the outbox: N drafts put in the outbox through `enqueue`, --enqueue-rows per transaction (timed apart, not
  part of delivery), then --workers worker processes (spawned, each with its own engine) each looping
  `deliver_due` with an `SmtpChannel` until a claim finds nothing. Timed from the moment every worker is ready
  to the last settle that recorded a message (CLOCK_MONOTONIC is one clock for all processes on Linux).

Afterwards every message must be `sent` in the database and must have arrived exactly once, by Message-ID (the
stored `provider_id`); the ceiling's emails must each have arrived once too. Otherwise the run fails (exit 1).
It also reports the CPU time each side used per message (the sender, the sink, and on PostgreSQL the workers'
server backends, read from /proc), which says what limits the rate on the machine it ran on.

Targets (the issue): the outbox delivers >= 1,000 messages/s, and within 2x of the ceiling measured in the
same run (outbox/ceiling >= 0.5). The script prints whether each holds.

Run (from the repository root):

    .venv/bin/python bench/outreach.py                          # 20,000 messages, SQLite in a temporary dir
    .venv/bin/python bench/outreach.py --database postgresql    # a fresh database on --postgres-url
    .venv/bin/python bench/outreach.py --quick                  # a smoke run of 300 messages

PostgreSQL: --postgres-url (default: AMENDS_BENCH_POSTGRES_URL, else the local amends_bench database); its role
needs CREATEDB: the run creates `amends_bench_<random>` and drops it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import queue
import re
import smtplib
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from amends.config import Settings
from amends.outreach.channels import SmtpChannel
from amends.outreach.outbox import (
    ChannelName,
    Draft,
    Message,
    MessageKind,
    MessageStatus,
    deliver_due,
    enqueue,
)
from amends.outreach.templates import preview_context, shipped_templates
from amends.outreach.templates import render as render_template
from amends.store import Database, tables, upgrade
from ingest import BenchError, _check_postgres, free_port, fresh_database  # bench/ is on the path here

DEFAULT_POSTGRES_URL = "postgresql+psycopg://amends:amends@localhost:5432/amends_bench"
MAIL_FROM = "Example Care <care@shop.example.com>"
RATE_TARGET = 1_000.0  # messages/s delivered by the outbox
CEILING_TARGET = 0.5  # outbox/ceiling: "within 2x of the ceiling"
QUICK_MESSAGES = 300
READY_SECONDS = 60.0
_DEFAULTS = Settings.model_fields  # the settings' defaults, without reading this process's environment

out = Console(highlight=False)
if not out.is_terminal:  # a log or a pipe: do not squeeze the table into 80 columns
    out = Console(highlight=False, width=160)
log = Console(stderr=True, highlight=False)


# --- the messages ----------------------------------------------------------------------------------------

TEMPLATE = "shop-late-delivery-apology"


def drafts_of(count: int) -> list[Draft]:
    """`count` apologies for late orders, rendered from the shipped template for the shop's late deliveries, one
    per customer, each with a List-Unsubscribe link."""
    template = shipped_templates().get(TEMPLATE)
    if template is None:
        raise BenchError(f"the shipped templates have no {TEMPLATE!r}")
    context = preview_context()
    drafts = []
    for n in range(1, count + 1):
        name, order = f"Customer {n}", f"O-{100_000 + n}"
        context["customer"]["name"] = name
        context["incident"]["data"]["order_id"] = order
        rendered = render_template(template, context)
        unsubscribe = f"https://care.example.com/u/{n}"
        drafts.append(
            Draft(
                key=f"bench:case:{n}:empathise:email",
                channel=ChannelName.EMAIL,
                kind=MessageKind.APOLOGY,
                recipient=f"{name} <customer{n}@example.com>",
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                headers={"List-Unsubscribe": f"<{unsubscribe}>"},
                case_id=n,
                customer_id=f"C-{n}",
            )
        )
    return drafts


def as_message(n: int, draft: Draft, now: datetime) -> Message:
    """The draft as the outbox would hand it to the channel (for the ceiling, which has no outbox)."""
    return Message(
        id=n,
        key=draft.key,
        case_id=draft.case_id,
        customer_id=draft.customer_id,
        channel=draft.channel,
        kind=draft.kind,
        recipient=draft.recipient,
        subject=draft.subject,
        text=draft.text,
        html=draft.html,
        headers=dict(draft.headers),
        status=MessageStatus.PENDING,
        attempts=1,
        not_before=now,
        next_attempt_at=now,
        lease_owner=None,
        lease_until=None,
        last_error=None,
        created_at=now,
        sent_at=None,
        provider_id=None,
        note=None,
    )


# --- the sink: aiosmtpd in a process of its own ----------------------------------------------------------

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class _Counting:
    """An aiosmtpd handler that counts each message it accepts by its Message-ID (or `None` without one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the server's loop thread counts; the command thread takes the counts
        self.counts: Counter[str | None] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        content: bytes = envelope.original_content or b""
        head = content.split(b"\r\n\r\n", 1)[0]
        found = _MESSAGE_ID.search(head)
        key = found.group(1).decode("ascii", "replace") if found else None
        with self.lock:
            self.counts[key] += 1
        return "250 OK"


def _sink_main(port: int, commands: Connection) -> None:
    """The sink process: serve SMTP on 127.0.0.1:`port`; answer "take" with the counts since the last take."""
    from aiosmtpd.controller import Controller  # only the sink needs it

    handler = _Counting()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=READY_SECONDS)
    controller.start()
    commands.send("ready")
    try:
        while True:
            command = commands.recv()
            if command == "take":
                with handler.lock:
                    counts, handler.counts = handler.counts, Counter()
                commands.send((dict(counts), time.process_time()))
            elif command == "stop":
                return
    finally:
        controller.stop()


class Sink:
    """The SMTP sink process, and the counts it keeps."""

    def __init__(self, context: multiprocessing.context.SpawnContext) -> None:
        self.port = free_port()
        self._commands, theirs = context.Pipe()
        self._process = context.Process(target=_sink_main, args=(self.port, theirs), name="smtp-sink", daemon=True)
        self._cpu = self.cpu_seconds = 0.0

    def __enter__(self) -> Sink:
        self._process.start()
        if not self._commands.poll(READY_SECONDS) or self._commands.recv() != "ready":
            self._process.kill()
            raise BenchError(f"the SMTP sink did not start within {READY_SECONDS:.0f} s")
        return self

    def take(self) -> dict[str | None, int]:
        """How many copies of each Message-ID arrived since the last take; `cpu_seconds` is the sink's CPU time
        between the last two takes."""
        self._commands.send("take")
        if not self._commands.poll(READY_SECONDS):
            raise BenchError("the SMTP sink stopped answering")
        counts: dict[str | None, int]
        counts, cpu = self._commands.recv()
        self.cpu_seconds, self._cpu = cpu - self._cpu, cpu
        return counts

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):  # the sink is gone already
            self._commands.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


def check_arrivals(counts: dict[str | None, int], expected: set[str], what: str) -> str:
    """A sentence saying every expected Message-ID arrived once; BenchError saying what went wrong if not."""
    missing = expected - counts.keys()
    extra = {key: n for key, n in counts.items() if key not in expected}
    twice = {key: n for key, n in counts.items() if key in expected and n > 1}
    if missing or extra or twice:
        raise BenchError(
            f"{what}: {len(missing):,} message(s) never arrived, {len(twice):,} arrived more than once, "
            f"{sum(extra.values()):,} unexpected arrival(s) (of {len(expected):,} expected)"
        )
    return f"{what}: every one of the {len(expected):,} messages arrived exactly once (by Message-ID)"


# --- the ceiling -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    what: str
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def measure_ceiling(sink: Sink, drafts: Sequence[Draft]) -> tuple[Measured, list[str]]:
    """Send prebuilt emails of the drafts with a bare smtplib loop over one connection."""
    channel = SmtpChannel(host="127.0.0.1", port=sink.port, security="none", mail_from=MAIL_FROM)
    now = datetime.now(UTC)
    emails = [channel.compose(as_message(n, draft, now), now=now) for n, draft in enumerate(drafts, start=1)]
    sender = "care@shop.example.com"
    recipients = [[f"customer{n}@example.com"] for n in range(1, len(drafts) + 1)]
    sink.take()
    started, cpu = time.perf_counter(), time.process_time()
    smtp = smtplib.SMTP("127.0.0.1", sink.port, timeout=30)
    smtp.ehlo()
    for email, to in zip(emails, recipients, strict=True):
        smtp.send_message(email, from_addr=sender, to_addrs=to)
    smtp.quit()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    verdict = check_arrivals(sink.take(), {str(email["Message-ID"]) for email in emails}, "ceiling")
    n = len(drafts)
    return Measured("bare smtplib, one connection (ceiling)", n, seconds), [
        verdict,
        f"ceiling CPU: the smtplib loop {cpu:.2f} s ({cpu / n * 1e6:,.0f} µs/message), the sink "
        f"{sink.cpu_seconds:.2f} s ({sink.cpu_seconds / n * 1e6:,.0f} µs/message)",
    ]


# --- the outbox ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerReport:
    worker: str
    sent: int
    retrying: int
    dead: int
    lost: int
    batches: int
    last_settled: float  # time.monotonic() after the last settle that recorded a message
    cpu_seconds: float  # the worker's own CPU time while delivering
    database_cpu_seconds: float | None  # its PostgreSQL backend's (None on SQLite, which runs in the worker)


def process_cpu_seconds(pid: int) -> float | None:
    """The CPU time (user + system) a process of this machine has used so far; None where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime and stime, fields 14 and 15


def _worker_main(url: str, port: int, name: str, batch: int, ready: Barrier, reports: Any) -> None:
    """A worker process: deliver due messages, a batch at a time, until a claim finds none; then report."""
    logging.basicConfig(level=logging.WARNING, format=f"{name}: %(levelname)s %(name)s: %(message)s")
    db = Database(url)
    channels = {"email": SmtpChannel(host="127.0.0.1", port=port, security="none", mail_from=MAIL_FROM)}
    options: dict[str, Any] = {
        "lease": timedelta(seconds=_DEFAULTS["outbox_lease_seconds"].default),
        "max_attempts": _DEFAULTS["outbox_max_attempts"].default,
        "backoff_base": timedelta(seconds=_DEFAULTS["outbox_backoff_base_seconds"].default),
        "backoff_cap": timedelta(seconds=_DEFAULTS["outbox_backoff_cap_seconds"].default),
    }
    backend: int | None = None
    with db.engine.connect() as connection:  # open the pool's connection before the clock; the loop reuses it
        if not db.is_sqlite:
            backend = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    sent = retrying = dead = lost = batches = 0
    ready.wait()
    last = time.monotonic()
    cpu = time.process_time()
    database_cpu = None if backend is None else process_cpu_seconds(backend)
    try:
        while True:
            settled = deliver_due(db, channels, worker=name, batch=batch, **options)
            done = len(settled.sent) + len(settled.retrying) + len(settled.dead) + len(settled.lost)
            if not done:
                break
            last = time.monotonic()
            batches += 1
            sent += len(settled.sent)
            retrying += len(settled.retrying)
            dead += len(settled.dead)
            lost += len(settled.lost)
        cpu = time.process_time() - cpu
        if database_cpu is not None and backend is not None:
            database_cpu = (process_cpu_seconds(backend) or database_cpu) - database_cpu
    finally:
        db.dispose()
    reports.put(WorkerReport(name, sent, retrying, dead, lost, batches, last, cpu, database_cpu))


def enqueue_all(db: Database, drafts: Sequence[Draft], rows_per_commit: int) -> float:
    now = datetime.now(UTC)
    started = time.perf_counter()
    for start in range(0, len(drafts), rows_per_commit):
        with db.unit_of_work(writes=True) as uow:
            for draft in drafts[start : start + rows_per_commit]:
                enqueue(uow, draft, now=now)
            uow.commit()
    return time.perf_counter() - started


def run_workers(
    context: multiprocessing.context.SpawnContext, url: str, port: int, args: argparse.Namespace
) -> tuple[float, list[WorkerReport]]:
    ready = context.Barrier(args.workers + 1)
    reports = context.Queue()
    names = [f"bench-worker-{i}" for i in range(1, args.workers + 1)]
    processes: list[SpawnProcess] = [
        context.Process(target=_worker_main, args=(url, port, name, args.batch, ready, reports), name=name)
        for name in names
    ]
    for process in processes:
        process.start()
    try:
        try:
            ready.wait(READY_SECONDS)
        except threading.BrokenBarrierError as exc:
            raise BenchError(f"the workers were not ready within {READY_SECONDS:.0f} s") from exc
        started = time.monotonic()
        done: list[WorkerReport] = []
        deadline = started + args.timeout
        while len(done) < len(processes):
            try:
                done.append(reports.get(timeout=1.0))
                continue
            except queue.Empty:
                pass
            failed = [p.name for p in processes if p.exitcode not in (None, 0)]
            if failed:
                raise BenchError(f"worker(s) {', '.join(failed)} failed; see their traceback above")
            if time.monotonic() > deadline:
                raise BenchError(f"the workers took longer than --timeout ({args.timeout:.0f} s)")
        for process in processes:
            process.join(30)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    return max(report.last_settled for report in done) - started, done


def stored_outcomes(db: Database) -> tuple[dict[str, int], set[str]]:
    m = tables.messages
    with db.engine.connect() as connection:
        counted = connection.execute(sa.select(m.c.status, sa.func.count()).group_by(m.c.status)).all()
        ids = connection.execute(sa.select(m.c.provider_id).where(m.c.status == MessageStatus.SENT.value)).scalars()
        return {str(status): int(count) for status, count in counted}, {str(i) for i in ids}


def measure_outbox(
    context: multiprocessing.context.SpawnContext, sink: Sink, drafts: Sequence[Draft], args: argparse.Namespace
) -> tuple[Measured, list[str]]:
    notes: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="amends-outreach-", dir=args.workdir) as workdir,
        fresh_database(args.database, Path(workdir), args.postgres_url) as url,
    ):
        db = Database(url)
        try:
            upgrade(db)
            seconds = enqueue_all(db, drafts, args.enqueue_rows)
            commits = -(-len(drafts) // args.enqueue_rows)
            notes.append(
                f"enqueue (not part of delivery): {len(drafts):,} messages through `enqueue` in {commits:,} "
                f"transaction(s) took {seconds:.2f} s ({len(drafts) / seconds:,.0f} messages/s)"
            )
            sink.take()
            delivery, reports = run_workers(context, url, sink.port, args)
            statuses, provider_ids = stored_outcomes(db)
        finally:
            db.dispose()
    for report in reports:
        notes.append(
            f"{report.worker}: {report.sent:,} sent in {report.batches:,} batches; retrying {report.retrying:,}, "
            f"dead {report.dead:,}, lost {report.lost:,}"
        )
    if statuses != {MessageStatus.SENT.value: len(drafts)}:
        raise BenchError(f"outbox: expected {len(drafts):,} messages sent, the database holds {statuses}")
    notes.append(check_arrivals(sink.take(), provider_ids, "outbox"))
    n = len(drafts)
    workers = sum(report.cpu_seconds for report in reports)
    cpu = [f"the workers {workers:.2f} s ({workers / n * 1e6:,.0f} µs/message)"]
    if all(report.database_cpu_seconds is not None for report in reports):
        backends = sum(report.database_cpu_seconds or 0.0 for report in reports)
        cpu.append(f"their PostgreSQL backends {backends:.2f} s ({backends / n * 1e6:,.0f} µs/message)")
    cpu.append(f"the sink {sink.cpu_seconds:.2f} s ({sink.cpu_seconds / n * 1e6:,.0f} µs/message)")
    notes.append(f"outbox CPU over {delivery:.2f} s of delivery: {', '.join(cpu)}")
    what = f"outbox, {args.workers} worker process(es), batch {args.batch}"
    return Measured(what, len(drafts), delivery), notes


# --- the report ------------------------------------------------------------------------------------------

COLUMNS = ("path", "database", "messages", "seconds", "messages/s", "ratio to ceiling")


def rows(ceiling: Measured, outbox: Measured, database: str) -> list[list[str]]:
    return [
        [ceiling.what, "—", f"{ceiling.messages:,}", f"{ceiling.seconds:.2f}", f"{ceiling.rate:,.0f}", "1.00"],
        [
            outbox.what,
            database,
            f"{outbox.messages:,}",
            f"{outbox.seconds:.2f}",
            f"{outbox.rate:,.0f}",
            f"{outbox.rate / ceiling.rate:.2f}",
        ],
    ]


def verdicts(ceiling: Measured, outbox: Measured) -> list[str]:
    ratio = outbox.rate / ceiling.rate
    return [
        f"{'MET' if outbox.rate >= RATE_TARGET else 'NOT MET'}: the outbox delivers ≥ {RATE_TARGET:,.0f} "
        f"messages/s (got {outbox.rate:,.0f})",
        f"{'MET' if ratio >= CEILING_TARGET else 'NOT MET'}: the outbox within 2x of the ceiling, ratio ≥ "
        f"{CEILING_TARGET:.2f} (got {ratio:.2f}: {outbox.rate:,.0f} against {ceiling.rate:,.0f} messages/s)",
    ]


def render(title: str, table_rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("path", "database") else "right")
    for row in table_rows:
        table.add_row(*row)
    return table


def markdown(title: str, table_rows: list[list[str]], notes: list[str]) -> str:
    lines = [f"## {title}", "", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "|".join("---" if name in ("path", "database") else "---:" for name in COLUMNS) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in table_rows]
    lines += ["", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=_positive, help="messages to deliver (default 20000; 500 with --quick)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_MESSAGES} messages by default")
    parser.add_argument("--workers", type=_positive, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--batch",
        type=_positive,
        default=_DEFAULTS["outbox_batch"].default,
        help="messages a worker claims at a time (default: the outbox_batch setting's default, %(default)s)",
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite", help="default sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AMENDS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a PostgreSQL server whose role may CREATE DATABASE (default: AMENDS_BENCH_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument(
        "--enqueue-rows", type=_positive, default=5_000, help="messages per enqueue transaction (default 5000)"
    )
    parser.add_argument("--out", type=Path, help="also write the table as markdown to this file")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the delivery may take (default 1800)")
    parser.add_argument("--workdir", type=Path, help="where the temporary directory goes (default: the system's)")
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = QUICK_MESSAGES if args.quick else 20_000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    context = multiprocessing.get_context("spawn")
    notes = [
        f"{os.cpu_count()} CPUs; the sink (aiosmtpd), the {args.workers} workers, the benchmark and the database "
        "server share them",
    ]
    try:
        if args.database == "postgresql":
            _check_postgres(args.postgres_url)
        started = time.perf_counter()
        drafts = drafts_of(args.messages)
        log.print(f"[dim]…[/] {len(drafts):,} messages rendered in {time.perf_counter() - started:.1f} s")
        notes.append(
            f"each message: the shipped template {TEMPLATE} rendered for one customer (text "
            f"{len(drafts[0].text):,} and HTML {len(drafts[0].html or ''):,} characters), with List-Unsubscribe"
        )
        with Sink(context) as sink:
            log.print(f"[dim]…[/] ceiling: bare smtplib, {len(drafts):,} messages over one connection")
            ceiling, arrived = measure_ceiling(sink, drafts)
            log.print(f"  {ceiling.seconds:.2f} s, {ceiling.rate:,.0f} messages/s")
            notes += arrived
            log.print(f"[dim]…[/] outbox on {args.database}: {args.workers} workers, batch {args.batch}")
            outbox, more = measure_outbox(context, sink, drafts, args)
            log.print(f"  {outbox.seconds:.2f} s, {outbox.rate:,.0f} messages/s")
            notes += more
    except BenchError as exc:
        log.print(f"[red]Benchmark failed:[/] {exc}")
        return 1
    title = f"amends outreach delivery, {args.messages:,} emails to a local SMTP sink"
    table_rows = rows(ceiling, outbox, args.database)
    out.print(render(title, table_rows))
    judged = verdicts(ceiling, outbox)
    for line in [*notes, *judged]:
        out.print(line, style="green" if line.startswith("MET") else "red" if line.startswith("NOT MET") else None)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(title, table_rows, [*notes, *judged]), encoding="utf-8")
        out.print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
