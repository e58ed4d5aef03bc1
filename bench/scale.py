"""Benchmark of broker mode (docs/scaling.md): end-to-end events/s through NATS JetStream and 1, 2 and 4 `amends worker`
processes into PostgreSQL, beside the JetStream publish rate of the same messages (the ceiling), in one run.

The events are the shop sample world (`--customers`, `--days`, `--seed`), evaluated by the shop rule pack with the
events clock; case intake runs in the workers; delivery is off (bench/outreach.py measures it). For each worker count,
in a fresh PostgreSQL database and on a stream of its own:

1. one API process (`amends serve` in broker mode, on a free loopback port) and the workers (`amends worker`, each
   a process) are started, and the run waits until the workers own every partition;
2. the clock starts, and this process posts every event to the API, 1,000 to a request, in the world's order (the
   bodies are built before the clock starts); the API validates them and publishes them to JetStream. One client
   in order, because the rules run on the events clock with an hour's allowed lateness: two clients racing would
   make events of one day arrive after the next day's, late, and the incidents would differ from run to run;
3. the clock stops when every event is stored in PostgreSQL, every incident the rules find is stored, and every
   incident is in a case (the intake has caught up): "published -> incidents and cases durable".

The ceiling is the same messages published straight to a stream nobody reads (no HTTP, no processing), on the same
nats-server, in the same run. Also measured, for the paper plan in docs/scaling.md: the CPU seconds per million
events of the API process, the workers, PostgreSQL (all its processes, read from /proc) and nats-server, the WAL
bytes PostgreSQL wrote per event, and the bytes the database grew by per event. A last row
runs the same events through one embedded process on PostgreSQL (`ingest_items` with the detector, then intake),
the setup without a broker.

This machine has two cores. Workers, PostgreSQL, nats-server and the publisher share them, so adding workers cannot
add cores: the curve flattens at the machine, not at amends. The CPU cost per event is what carries over to a bigger
machine, and the table says where the cores went.

Run (from the repository root):

    .venv/bin/python bench/scale.py                       # 4,000 customers, 90 days (about 55,000 events)
    .venv/bin/python bench/scale.py --quick               # a smoke run
    .venv/bin/python bench/scale.py --workers 1,2,4,8 --partitions 16

PostgreSQL: --postgres-url (default: AMENDS_BENCH_POSTGRES_URL, else AMENDS_TEST_POSTGRES_URL, else the local
amends_test database); its role needs CREATEDB: each run creates `amends_bench_<random>` and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from amends.access import Scope, create_key
from amends.broker_worker import PartitionLocks
from amends.config import Settings
from amends.detect.service import Detection
from amends.events import Item, ingest_items
from amends.events.broker import EventBroker
from amends.recover.service import Recovery
from amends.store import Database, tables, upgrade
from amends.world import generate_world
from ingest import AMENDS, BenchError, _check_postgres, free_port, fresh_database  # bench/ is on the path here
from outreach import process_cpu_seconds

SECRET = "bench-secret-key-that-is-long-enough-0123456789"
NATS_SERVER = Path(sys.executable).with_name("nats-server")
log = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class Run:
    label: str
    events: int
    seconds: float
    incidents: int
    cases: int
    worker_cpu: float | None  # CPU seconds of the worker processes (or the embedded process)
    postgres_cpu: float | None
    nats_cpu: float | None
    wal_bytes: int | None
    api_cpu: float | None = None
    database_bytes: int | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def per_million(self, cpu: float | None) -> str:
        return "-" if cpu is None else f"{cpu / self.events * 1e6:,.0f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=4_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run, comma-separated")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500, help="messages a worker stores per transaction")
    parser.add_argument("--postgres-url", default=os.environ.get("AMENDS_BENCH_POSTGRES_URL")
                        or os.environ.get("AMENDS_TEST_POSTGRES_URL")
                        or "postgresql+psycopg://amends:amends@localhost:5432/amends_test")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900, help="seconds one run may take")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 400 customers, 30 days, 1 and 2 workers")
    args = parser.parse_args(argv)
    if args.quick:
        args.customers, args.days, args.workers = 400, 30, "1,2"
    args.worker_counts = [int(part) for part in str(args.workers).split(",") if part.strip()]
    return args


# --- measuring ---------------------------------------------------------------------------------------------------


def postgres_cpu_seconds() -> float | None:
    """CPU time of every PostgreSQL process on this machine (the server, its backends, WAL writer, autovacuum)."""
    total, found = 0.0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name.startswith("postgres"):
            seconds = process_cpu_seconds(int(entry.name))
            if seconds is not None:
                total, found = total + seconds, True
    return total if found else None


def database_size(db: Database) -> int | None:
    with db.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one())


def wal_position(db: Database) -> int | None:
    with db.engine.connect() as connection:
        try:
            return int(connection.execute(sa.text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")).scalar_one())
        except sa.exc.DBAPIError:
            return None


def counts(db: Database) -> tuple[int, int, int, int]:
    """Events, incidents, incidents in a case, and cases."""
    with db.engine.connect() as connection:
        return tuple(  # type: ignore[return-value]
            int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            for table in (tables.events, tables.incidents, tables.case_incidents, tables.cases)
        )


def wait_done(db: Database, expected: int, *, quiet: float, timeout: float) -> tuple[float, tuple[int, int, int, int]]:
    """The moment every event was stored and the intake had taken every incident, with nothing changing for `quiet`
    seconds after it (a sweep may still fire timers: then the clock stops at the last change)."""
    deadline = time.monotonic() + timeout
    last, since = counts(db), time.monotonic()
    while True:
        now = counts(db)
        if now != last:
            last, since = now, time.monotonic()
        events, incidents, taken, _ = now
        if events >= expected and taken == incidents and time.monotonic() - since >= quiet:
            return since, now
        if time.monotonic() > deadline:
            raise BenchError(f"not done after {timeout:.0f} s: {now} (events, incidents, taken, cases)")
        time.sleep(0.05)


# --- the runs ----------------------------------------------------------------------------------------------------


def publish(url: str, stream: str, partitions: int, envelopes: list[dict[str, Any]]) -> float:
    """Publish every envelope, 500 to a call as API clients would send them; the seconds it took."""

    async def run() -> float:
        async with EventBroker(url, partitions=partitions, stream=stream) as broker:
            start = time.monotonic()
            for at in range(0, len(envelopes), 500):
                await broker.publish(envelopes[at : at + 500])
            return time.monotonic() - start

    return asyncio.run(run())


def post_all(port: int, key: str, bodies: list[bytes]) -> None:
    """POST every body to the API, in order; each answer must be 200."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as client:
        for body in bodies:
            response = client.post("/v1/events", content=body)
            if response.status_code != 200:
                raise BenchError(f"the API answered {response.status_code}: {response.text[:300]}")


def start_api(settings: Settings, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = worker_env(settings) | {"AMENDS_PORT": str(port), "AMENDS_DETECT_SWEEP_IN_SERVE": "false"}
    with log_path.open("wb") as out:
        api = subprocess.Popen([str(AMENDS), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return api
        except httpx.HTTPError:
            pass
        if api.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"the API did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.2)


def settings_for(url: str, nats_url: str, stream: str, args: argparse.Namespace) -> Settings:
    return Settings(
        database_url=url,
        secret_key=SECRET,
        broker_url=nats_url,
        broker_stream=stream,
        broker_partitions=args.partitions,
        broker_batch=args.batch,
        rule_packs=("shop",),
        detect_clock="events",
        detect_allowed_lateness="1h",
        holdout_share=0.0,
        outbox_deliver=False,
    )


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMENDS_")}
    env |= {
        "AMENDS_DATABASE_URL": settings.database_url,
        "AMENDS_SECRET_KEY": SECRET,
        "AMENDS_BROKER_URL": str(settings.broker_url),
        "AMENDS_BROKER_STREAM": settings.broker_stream,
        "AMENDS_BROKER_PARTITIONS": str(settings.broker_partitions),
        "AMENDS_BROKER_BATCH": str(settings.broker_batch),
        "AMENDS_RULE_PACKS": "shop",
        "AMENDS_DETECT_CLOCK": "events",
        "AMENDS_DETECT_ALLOWED_LATENESS": "1h",
        "AMENDS_HOLDOUT_SHARE": "0",
        "AMENDS_OUTBOX_DELIVER": "false",
        "AMENDS_LOG_LEVEL": "warning",
    }
    return env


def run_workers(
    count: int, envelopes: list[dict[str, Any]], unique: int, nats_url: str, nats_pid: int, workdir: Path,
    args: argparse.Namespace,
) -> Run:  # fmt: skip
    stream = f"BENCH_{count}_WORKERS"
    with fresh_database("postgresql", workdir, args.postgres_url) as url:
        db = Database(url)
        upgrade(db)
        settings = settings_for(url, nats_url, stream, args)
        with db.unit_of_work() as uow:
            _key, key = create_key(uow, "bench", [Scope.EVENTS_WRITE], now=datetime.now(UTC))
            uow.commit()
        bodies = [orjson.dumps(envelopes[at : at + 1_000]) for at in range(0, len(envelopes), 1_000)]
        api_port = free_port()
        api = start_api(settings, api_port, workdir / f"api-{count}.log")
        logs = [workdir / f"worker-{count}-{n}.log" for n in range(count)]
        workers = []
        for path in logs:
            with path.open("wb") as out:
                workers.append(subprocess.Popen([str(AMENDS), "worker"], env=worker_env(settings), stdout=out,
                                                stderr=subprocess.STDOUT))  # fmt: skip
        locks = PartitionLocks(db, stream=stream, present=False)
        try:
            deadline = time.monotonic() + 60
            while locks.taken() != set(range(args.partitions)):
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    raise BenchError(f"the workers did not take the partitions:\n{logs[0].read_text()[-2000:]}")
                time.sleep(0.1)
            time.sleep(1.5)  # past the first hand-overs of partitions between workers that started together
            cpu = [process_cpu_seconds(w.pid) for w in workers]
            pg_cpu, nats_cpu, wal = postgres_cpu_seconds(), process_cpu_seconds(nats_pid), wal_position(db)
            api_cpu, size = process_cpu_seconds(api.pid), database_size(db)
            start = time.monotonic()
            post_all(api_port, key, bodies)
            end, (events, incidents, _, cases) = wait_done(db, unique, quiet=2.0, timeout=args.timeout)
            after = [process_cpu_seconds(w.pid) for w in workers]
            worker_cpu = sum((a or 0.0) - (b or 0.0) for a, b in zip(after, cpu, strict=True))
            pg_after, nats_after, wal_after = postgres_cpu_seconds(), process_cpu_seconds(nats_pid), wal_position(db)
            api_after, size_after = process_cpu_seconds(api.pid), database_size(db)
        finally:
            locks.close()
            api.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    worker.kill()
            api.wait(timeout=60)
            db.dispose()
    return Run(
        f"API + {count} worker{'s' if count > 1 else ''}", events, end - start, incidents, cases, worker_cpu,
        _spent(pg_cpu, pg_after), _spent(nats_cpu, nats_after), _spent(wal, wal_after),
        _spent(api_cpu, api_after), _spent(size, size_after),
    )  # fmt: skip


def _spent(before: Any, after: Any) -> Any:
    return None if before is None or after is None else after - before


def run_embedded(envelopes: list[dict[str, Any]], unique: int, workdir: Path, args: argparse.Namespace) -> Run:
    """The same events through one embedded process on PostgreSQL: 500-event batches with the detector, then intake."""
    with fresh_database("postgresql", workdir, args.postgres_url) as url:
        db = Database(url)
        upgrade(db)
        settings = settings_for(url, "nats://unused:4222", "unused", args).model_copy(update={"broker_url": None})
        detection = Detection.from_settings(db, settings)
        recovery = Recovery.from_settings(db, settings)
        me = os.getpid()
        cpu, pg_cpu, wal, size = process_cpu_seconds(me), postgres_cpu_seconds(), wal_position(db), database_size(db)
        start = time.monotonic()
        for at in range(0, len(envelopes), 500):
            items = [Item(e) for e in envelopes[at : at + 500]]
            ingest_items(db, items, received_at=datetime.now(UTC), watcher=detection.detector)
        detection.detector.sweep(db)
        detected = time.monotonic()
        recovery.tick()  # every incident at once: the intake's own rate (it is one serial step in broker mode too)
        seconds = time.monotonic() - start
        intake_seconds = time.monotonic() - detected
        events, incidents, _, cases = counts(db)
        cpu_after, pg_after, wal_after = process_cpu_seconds(me), postgres_cpu_seconds(), wal_position(db)
        size_after = database_size(db)
        db.dispose()
    if events != unique:
        raise BenchError(f"the embedded run stored {events} events, not {unique}")
    log.print(f"case intake alone (embedded): {incidents:,} incidents in {intake_seconds:.2f} s = "
              f"{incidents / intake_seconds:,.0f} incidents/s")  # fmt: skip
    return Run(
        "embedded (1 process, no broker, no HTTP)", events, seconds, incidents, cases, _spent(cpu, cpu_after),
        _spent(pg_cpu, pg_after), None, _spent(wal, wal_after), None, _spent(size, size_after),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not AMENDS.is_file() or not NATS_SERVER.is_file():
        log.print(f"[red]Needs {AMENDS} and {NATS_SERVER}: install the project with its dev extra.[/]")
        return 2
    try:
        _check_postgres(args.postgres_url)
    except BenchError as exc:
        log.print(f"[red]{exc}[/]")
        return 2
    envelopes = list(generate_world("shop", customers=args.customers, days=args.days, seed=args.seed))
    unique = len({(e["source"], e["id"]) for e in envelopes})
    log.print(f"{len(envelopes):,} events of the shop world ({args.customers:,} customers, {args.days} days); "
              f"{args.partitions} partitions; {os.cpu_count()} CPUs")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="amends-scale-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        command = [str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(workdir / "jetstream")]
        nats = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nats_url = f"nats://127.0.0.1:{port}"
        try:
            time.sleep(0.5)
            nats_before = process_cpu_seconds(nats.pid)
            ceiling_seconds = publish(nats_url, "BENCH_CEILING", args.partitions, envelopes)
            nats_after = process_cpu_seconds(nats.pid)
            ceiling = Run("JetStream publish, no processing (ceiling)", len(envelopes), ceiling_seconds, 0, 0, None,
                          None, None if nats_before is None or nats_after is None else nats_after - nats_before,
                          None)  # fmt: skip
            runs = []
            for count in args.worker_counts:
                log.print(f"{count} worker(s)…")
                runs.append(run_workers(count, envelopes, unique, nats_url, nats.pid, workdir, args))
            log.print("embedded…")
            runs.append(run_embedded(envelopes, unique, workdir, args))
        except BenchError as exc:
            log.print(f"[red]{exc}[/]")
            return 1
        finally:
            nats.terminate()
            nats.wait(timeout=10)
    table = Table(title=f"Broker mode: {unique:,} events, published -> incidents and cases durable in PostgreSQL")
    for column in ("run", "events/s", "÷ ceiling", "seconds", "incidents", "cases", "API CPU-s/M events",
                   "workers CPU-s/M", "PostgreSQL CPU-s/M", "nats CPU-s/M", "WAL B/event", "DB B/event"):  # fmt: skip
        table.add_column(column, justify="left" if column == "run" else "right")
    for run in [ceiling, *runs]:
        table.add_row(
            run.label, f"{run.rate:,.0f}", f"{run.rate / ceiling.rate:.3f}", f"{run.seconds:.1f}",
            f"{run.incidents:,}", f"{run.cases:,}", run.per_million(run.api_cpu), run.per_million(run.worker_cpu),
            run.per_million(run.postgres_cpu), run.per_million(run.nats_cpu), _per_event(run.wal_bytes, run.events),
            _per_event(run.database_bytes, run.events),
        )  # fmt: skip
    Console(width=220).print(table)
    found = {(run.incidents, run.cases) for run in runs}
    if len(found) != 1:
        log.print(f"[red]The runs found different numbers of incidents and cases: {sorted(found)}[/]")
        return 1
    return 0


def _per_event(value: int | None, events: int) -> str:
    return "-" if value is None else f"{value / events:,.0f}"


if __name__ == "__main__":
    sys.exit(main())
