"""Benchmark of event ingestion: `amends ingest FILE`, JSON batches POSTed to `amends serve`, and a floor.

It generates a JSONL file of N realistic CloudEvents (unique ids, ~50,000 customers, four event types, times
with offsets, a small `data` object), then measures on each engine, always into a fresh database (SQLite: a
new file; PostgreSQL: a database created for the run and dropped after it):

- file ingest: `amends ingest FILE` as a child process after `amends init`, timed from start to exit (so
  process start-up and imports are included), with the child's peak RSS. A second run on a file of N/10
  events gives a second peak RSS, to show that memory stays flat in the file size.
- HTTP batch ingest: `amends serve` on a free 127.0.0.1 port; the events are POSTed as JSON arrays of 1,000
  by a few client threads. Bodies are serialised before the clock runs (a chunk of batches at a time, so
  memory stays bounded), every answer must be 200 and the accepted counts must add up to N.
- floor: the same rows inserted by bare SQLAlchemy Core `executemany` into `amends.store.tables.events`,
  --commit-rows per transaction (as file ingest), from dicts holding real datetimes and dicts:
  SQLAlchemy's own type processing, where a hand-written approach would start. Only the inserts are timed.

events/s is N divided by the seconds measured. Targets: file ingest >= 100,000 events/s on SQLite, HTTP
batch ingest >= 20,000 events/s.

Run (from the repository root):

    .venv/bin/python bench/ingest.py --events 1000000
    .venv/bin/python bench/ingest.py --events 100000 --engines sqlite --out bench-results.md

PostgreSQL comes from --postgres-url (default: AMENDS_TEST_POSTGRES_URL, else the local amends_test
server); its role needs CREATEDB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import psycopg
import sqlalchemy as sa
from psycopg import sql as pg_sql
from rich.console import Console
from rich.table import Table

from amends.access import Scope, create_key
from amends.events.ledger import dedup_key
from amends.store import Database, tables, upgrade

T = TypeVar("T")

ENGINES = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://amends:amends@localhost:5432/amends_test"
SUBJECTS = 50_000
HTTP_BATCH = 1_000  # events per POST
HTTP_CHUNK = 50  # batches serialised ahead of the clock at a time
FILE_TARGET = 100_000  # events/s, file ingest on SQLite
HTTP_TARGET = 20_000  # events/s, HTTP batch ingest
READY_SECONDS = 60.0
STOP_SECONDS = 20.0
SECRET_KEY = "bench-" + secrets.token_urlsafe(32)

AMENDS = Path(sys.executable).with_name("amends")
out = Console(highlight=False)
if not out.is_terminal:  # a log or a pipe: do not squeeze the table into 80 columns
    out = Console(highlight=False, width=160)
log = Console(stderr=True, highlight=False)


class BenchError(Exception):
    """The benchmark could not measure what it set out to."""


# --- the events ---------------------------------------------------------------------------------------

_TYPES = ("order.placed",) * 40 + ("order.delivered",) * 35 + ("support.contact",) * 15 + ("flight.arrived",) * 10
_SOURCES = {
    "order.placed": "https://shop.example.com/orders",
    "order.delivered": "https://logistics.example.com/deliveries",
    "support.contact": "https://support.example.com/tickets",
    "flight.arrived": "https://ops.example.com/flights",
}
_OFFSETS = tuple(
    timezone(timedelta(hours=h, minutes=m)) for h, m in ((0, 0), (1, 0), (2, 0), (-3, 0), (-5, 0), (5, 30))
)
_CARRIERS = ("DHL", "UPS", "DPD", "GLS", "PostNL")
_CHANNELS = ("email", "phone", "chat", "web")
_TOPICS = ("late delivery", "refund", "damaged item", "billing", "other")


def _data(kind: str, n: int, rng: random.Random) -> dict[str, Any]:
    if kind == "order.placed":
        return {
            "order_id": f"O-{n}",
            "total": round(rng.uniform(5, 400), 2),
            "currency": "EUR",
            "items": rng.randint(1, 6),
        }
    if kind == "order.delivered":
        return {
            "order_id": f"O-{rng.randrange(n + 1)}",
            "carrier": rng.choice(_CARRIERS),
            "late_minutes": rng.choice((0, 0, 0, 0, 15, 90, 1440)),
        }
    if kind == "support.contact":
        return {"ticket_id": f"T-{n}", "channel": rng.choice(_CHANNELS), "topic": rng.choice(_TOPICS)}
    return {
        "flight": f"AM{rng.randint(100, 999)}",
        "booking": f"B-{rng.randrange(10**6):06d}",
        "delay_minutes": rng.choice((0, 0, 0, 5, 45, 180)),
    }


def generate(path: Path, count: int, *, seed: int) -> None:
    """Write `count` CloudEvents envelopes to `path`, one JSON object a line, streamed."""
    rng = random.Random(seed)
    instant = datetime(2025, 1, 1, tzinfo=UTC)
    with path.open("wb", buffering=1 << 20) as file:
        for n in range(count):
            kind = rng.choice(_TYPES)
            instant += timedelta(milliseconds=rng.randrange(1, 2_000))
            envelope = {
                "specversion": "1.0",
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "source": _SOURCES[kind],
                "type": kind,
                "time": instant.astimezone(rng.choice(_OFFSETS)).isoformat(timespec="milliseconds"),
                "subject": f"C-{rng.randrange(SUBJECTS) + 1}",
                "data": _data(kind, n, rng),
            }
            file.write(orjson.dumps(envelope))
            file.write(b"\n")


def read_lines(path: Path, size: int) -> Iterator[list[bytes]]:
    """The file's lines, without their line ends, `size` at a time."""
    with path.open("rb") as file:
        while chunk := [line.rstrip(b"\n") for line in islice(file, size)]:
            yield chunk


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- databases ----------------------------------------------------------------------------------------


def _libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_database(engine: str, workdir: Path, postgres_url: str) -> Iterator[str]:
    """The URL of a database with nothing in it, removed again when the block ends."""
    if engine == "sqlite":
        path = workdir / f"amends-{secrets.token_hex(4)}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
        return
    name = f"amends_bench_{secrets.token_hex(6)}"
    admin = _libpq(postgres_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        connection.execute(pg_sql.SQL("CREATE DATABASE {}").format(pg_sql.Identifier(name)))
    try:
        yield sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(admin, name)


def _drop_database(admin: str, name: str) -> None:
    # After a big load, autovacuum may be working in the database; FORCE cannot end a process of
    # another role, so wait for it to finish.
    drop = pg_sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pg_sql.Identifier(name))
    for attempt in range(60):
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
                connection.execute(drop)
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == 59:
                raise
            time.sleep(1)


def count_events(url: str) -> int:
    db = Database(url)
    try:
        with db.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(tables.events)).scalar_one())
    finally:
        db.dispose()


def check_count(url: str, expected: int, what: str) -> None:
    stored = count_events(url)
    if stored != expected:
        raise BenchError(f"{what}: {stored:,} events stored, expected {expected:,}")


# --- child processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exit:
    """How a child process ended: its exit code, its peak RSS (KiB) and whether it was killed for time."""

    code: int
    peak_rss_kib: int
    timed_out: bool


def child_env(url: str, **settings: str) -> dict[str, str]:
    """The environment for an amends child: the caller's, minus its AMENDS_* settings, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMENDS_")}
    env |= {
        "AMENDS_DATABASE_URL": url,
        "AMENDS_SECRET_KEY": SECRET_KEY,
        "AMENDS_LOG_LEVEL": "warning",
        **{f"AMENDS_{k.upper()}": v for k, v in settings.items()},
    }
    return env


def reap(process: subprocess.Popen[bytes], timeout: float) -> Exit:
    """Wait for a child, killing it after `timeout` seconds; `os.wait4` gives that child's own rusage."""
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        process.kill()

    watchdog = threading.Timer(timeout, kill)
    watchdog.start()
    try:
        _pid, status, usage = os.wait4(process.pid, 0)
    finally:
        watchdog.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return Exit(process.returncode, usage.ru_maxrss, timed_out.is_set())


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_amends(args: list[str], env: dict[str, str], workdir: Path, timeout: float) -> tuple[float, Exit]:
    """Run `amends ARGS` to its end; return its wall time and how it ended. Its output goes to a log file."""
    output = workdir / f"amends-{args[0]}-{secrets.token_hex(3)}.log"
    with output.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(AMENDS), *args], env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
        try:
            ended = reap(process, timeout)
        except BaseException:  # interrupted: leave no child behind
            process.kill()
            process.wait(STOP_SECONDS)
            raise
        seconds = time.perf_counter() - started
    if ended.timed_out:
        raise BenchError(f"amends {' '.join(args)} took over {timeout:.0f} s and was killed\n{_tail(output)}")
    if ended.code != 0:
        raise BenchError(f"amends {' '.join(args)} exited with {ended.code}\n{_tail(output)}")
    return seconds, ended


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> int | None:
    """Stop a server child (SIGTERM, then SIGKILL); return its peak RSS in KiB if it was still ours to reap."""
    if process.poll() is not None:
        return None
    process.send_signal(signal.SIGTERM)
    if process.returncode is not None:  # it ended just before the signal, and poll() reaped it
        return None
    return reap(process, STOP_SECONDS).peak_rss_kib


# --- the measurements ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_kib: int | None = None


def measure_file(url: str, path: Path, events: int, workdir: Path, commit_rows: int, timeout: float) -> Measured:
    env = child_env(url, ingest_commit_rows=str(commit_rows))
    run_amends(["init"], env, workdir, timeout)
    seconds, ended = run_amends(["ingest", str(path)], env, workdir, timeout)
    check_count(url, events, "amends ingest")
    return Measured(seconds, ended.peak_rss_kib)


def _wait_ready(process: subprocess.Popen[bytes], base: str, output: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    with httpx.Client(base_url=base, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"amends serve exited with {process.returncode}\n{_tail(output)}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise BenchError(f"amends serve was not ready within {READY_SECONDS:.0f} s\n{_tail(output)}")


def _bodies(path: Path) -> Iterator[list[bytes]]:
    """JSON-array bodies of HTTP_BATCH events, HTTP_CHUNK bodies at a time."""
    for lines in read_lines(path, HTTP_BATCH * HTTP_CHUNK):
        yield [b"[" + b",".join(batch) + b"]" for batch in batched(lines, HTTP_BATCH)]


def post_all(base: str, key: str, path: Path, clients: int, timeout: float) -> tuple[float, int]:
    """POST the file's events as batches from `clients` threads; return the seconds spent and the accepted count."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    local = threading.local()
    opened: list[httpx.Client] = []
    guard = threading.Lock()

    def client() -> httpx.Client:
        current: httpx.Client | None = getattr(local, "client", None)
        if current is None:
            current = httpx.Client(base_url=base, headers=headers, timeout=timeout, trust_env=False)
            local.client = current
            with guard:
                opened.append(current)
        return current

    def send(body: bytes) -> int:
        try:
            response = client().post("/v1/events", content=body)
        except httpx.HTTPError as exc:
            raise BenchError(f"POST /v1/events failed: {exc!r}") from exc
        if response.status_code != 200:
            raise BenchError(f"POST /v1/events answered {response.status_code}: {response.text[:500]}")
        return int(response.json()["accepted"])

    seconds = 0.0
    accepted = 0
    try:
        with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="bench-client") as pool:
            for bodies in _bodies(path):
                started = time.perf_counter()
                accepted += sum(pool.map(send, bodies))
                seconds += time.perf_counter() - started
    finally:
        for each in opened:
            each.close()
    return seconds, accepted


def measure_http(url: str, path: Path, events: int, workdir: Path, clients: int, timeout: float) -> Measured:
    run_amends(["init"], child_env(url), workdir, timeout)
    db = Database(url)
    try:
        with db.unit_of_work() as uow:
            _key, key = create_key(uow, "bench", [Scope.EVENTS_WRITE], now=datetime.now(UTC))
            uow.commit()
    finally:
        db.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    output = workdir / f"amends-serve-{port}.log"
    env = child_env(url, host="127.0.0.1", port=str(port))
    peak: int | None = None
    with output.open("wb") as sink:
        server = subprocess.Popen(
            [str(AMENDS), "serve"], env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
        try:
            _wait_ready(server, base, output)
            seconds, accepted = post_all(base, key, path, clients, timeout)
        except BenchError as exc:
            if server.poll() is not None:
                raise BenchError(f"{exc}\namends serve exited with {server.returncode}\n{_tail(output)}") from exc
            raise
        finally:
            peak = stop(server)
    if accepted != events:
        raise BenchError(f"HTTP batches: {accepted:,} events accepted, expected {events:,}")
    check_count(url, events, "HTTP batches")
    return Measured(seconds, peak)


def _floor_row(line: bytes, received: datetime) -> dict[str, Any]:
    event = orjson.loads(line)
    return {
        "dedup_key": dedup_key(event["source"], event["id"]),
        "source": event["source"],
        "event_id": event["id"],
        "type": event["type"],
        "time": datetime.fromisoformat(event["time"]),
        "subject": event["subject"],
        "data": event["data"],
        "attributes": None,
        "received_at": received,
    }


def measure_floor(url: str, path: Path, events: int, batch: int) -> Measured:
    """Bare Core executemany of the same rows, `batch` per commit; only the inserts and commits are timed."""
    db = Database(url)  # the same engine set-up (SQLite pragmas, JSON serialiser) amends itself uses
    try:
        upgrade(db)
        received = datetime.now(UTC)
        subjects = sorted({orjson.loads(line)["subject"] for lines in read_lines(path, batch) for line in lines})
        seconds = 0.0
        with db.engine.connect() as connection:
            for chunk in batched(subjects, batch):
                connection.execute(sa.insert(tables.customers), [{"id": s, "created_at": received} for s in chunk])
                connection.commit()
            for lines in read_lines(path, batch):
                rows = [_floor_row(line, received) for line in lines]
                started = time.perf_counter()
                connection.execute(sa.insert(tables.events), rows)
                connection.commit()
                seconds += time.perf_counter() - started
    finally:
        db.dispose()
    check_count(url, events, "floor")
    return Measured(seconds)


# --- the report ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    engine: str
    path: str
    events: int
    measured: Measured
    floor_rate: float | None = None
    target: int | None = None

    @property
    def rate(self) -> float:
        return self.events / self.measured.seconds

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.rate >= self.target

    def cells(self) -> list[str]:
        rss = self.measured.peak_rss_kib
        return [
            self.engine,
            self.path,
            f"{self.events:,}",
            f"{self.measured.seconds:.2f}",
            f"{self.rate:,.0f}",
            "—" if self.floor_rate is None else f"{self.floor_rate:,.0f}",
            "—" if self.floor_rate is None else f"{self.rate / self.floor_rate:.2f}",
            "—" if rss is None else f"{rss / 1024:,.0f} MiB",
            "—" if self.target is None else f"≥ {self.target:,}",
            {None: "—", True: "yes", False: "NO"}[self.met],
        ]


COLUMNS: tuple[str, ...] = (
    "engine",
    "path",
    "events",
    "seconds",
    "events/s",
    "floor events/s",
    "ours/floor",
    "peak RSS",
    "target",
    "met",
)


def render(results: list[Result], title: str) -> Table:
    table = Table(title=title)
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("engine", "path", "met") else "right")
    for result in results:
        style = {None: None, True: "green", False: "red"}[result.met]
        table.add_row(*result.cells(), style=style)
    return table


def markdown(results: list[Result], title: str, notes: list[str]) -> str:
    lines = [f"## {title}", "", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "|".join("---" if c in ("engine", "path", "met") else "---:" for c in COLUMNS) + "|")
    lines += ["| " + " | ".join(result.cells()) + " |" for result in results]
    lines += ["", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


def summary(results: list[Result]) -> list[str]:
    notes = []
    for result in results:
        if result.met is not None:
            verdict = "MET" if result.met else "NOT MET"
            notes.append(
                f"{verdict}: {result.path} on {result.engine} ≥ {result.target:,} events/s (got {result.rate:,.0f})"
            )
    return notes


# --- main -----------------------------------------------------------------------------------------------


def _engines(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(ENGINES)} (comma-separated)")
    return list(dict.fromkeys(chosen))


def _positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 10:
        raise argparse.ArgumentTypeError("must be at least 10")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=_positive, default=1_000_000, help="events in the file (default 1000000)")
    parser.add_argument("--engines", type=_engines, default=list(ENGINES), help="sqlite,postgresql (default both)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AMENDS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a PostgreSQL server whose role may CREATE DATABASE (default: AMENDS_TEST_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="also write the results as a markdown table to this file")
    parser.add_argument("--clients", type=int, default=2, help="concurrent HTTP client threads (default 2)")
    parser.add_argument("--commit-rows", type=int, default=50_000, help="AMENDS_INGEST_COMMIT_ROWS (default 50000)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds any one step may take (default 1800)")
    parser.add_argument("--workdir", type=Path, help="where the temporary directory goes (default: the system's)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated events (default 7)")
    return parser.parse_args(argv)


def _step(what: str, action: Callable[[], Measured]) -> Measured:
    log.print(f"[dim]…[/] {what}")
    measured = action()
    rss = "" if measured.peak_rss_kib is None else f", peak RSS {measured.peak_rss_kib / 1024:,.0f} MiB"
    log.print(f"  {measured.seconds:.2f} s{rss}")
    return measured


def bench_engine(engine: str, args: argparse.Namespace, big: Path, small: Path, workdir: Path) -> list[Result]:
    n: int = args.events
    small_n = n // 10
    pg: str = args.postgres_url

    def file_run(path: Path, events: int) -> Measured:
        with fresh_database(engine, workdir, pg) as url:
            return measure_file(url, path, events, workdir, args.commit_rows, args.timeout)

    def http_run() -> Measured:
        with fresh_database(engine, workdir, pg) as url:
            return measure_http(url, big, n, workdir, args.clients, args.timeout)

    def floor_run() -> Measured:
        with fresh_database(engine, workdir, pg) as url:
            return measure_floor(url, big, n, args.commit_rows)

    file_big = _step(f"{engine}: amends ingest, {n:,} events", lambda: file_run(big, n))
    file_small = _step(f"{engine}: amends ingest, {small_n:,} events", lambda: file_run(small, small_n))
    http = _step(f"{engine}: HTTP batches of {HTTP_BATCH:,}, {args.clients} clients", http_run)
    floor = _step(f"{engine}: floor, Core executemany of {args.commit_rows:,}", floor_run)
    floor_rate = n / floor.seconds
    return [
        Result(engine, "file ingest", n, file_big, floor_rate, FILE_TARGET if engine == "sqlite" else None),
        Result(engine, "file ingest, N/10 (RSS check)", small_n, file_small),
        Result(engine, "HTTP batch", n, http, floor_rate, HTTP_TARGET),
        Result(engine, "floor: Core executemany", n, floor),
    ]


def _check_postgres(url: str) -> None:
    try:
        with psycopg.connect(_libpq(url), connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        raise BenchError(f"PostgreSQL at --postgres-url is not reachable: {str(exc).strip()}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not AMENDS.is_file():
        log.print(f"[red]No amends command at {AMENDS}; install the project into this virtualenv.[/]")
        return 2
    try:
        if "postgresql" in args.engines:
            _check_postgres(args.postgres_url)
        with tempfile.TemporaryDirectory(prefix="amends-bench-", dir=args.workdir) as temporary:
            workdir = Path(temporary)
            big, small = workdir / "events.jsonl", workdir / "events-small.jsonl"
            started = time.perf_counter()
            generate(big, args.events, seed=args.seed)
            generate(small, args.events // 10, seed=args.seed + 1)
            size = big.stat().st_size
            log.print(
                f"Generated {args.events:,} events ({size / 2**20:,.0f} MiB) in {time.perf_counter() - started:.1f} s"
            )
            startup, _ = run_amends(["--help"], child_env("sqlite:///unused.db"), workdir, 60)
            results: list[Result] = []
            for engine in args.engines:
                results += bench_engine(engine, args, big, small, workdir)
    except BenchError as exc:
        log.print(f"[red]Benchmark failed:[/] {exc}")
        return 1
    title = f"amends ingestion, {args.events:,} events"
    notes = summary(results)
    notes.append(
        f"file ingest seconds are the whole `amends ingest` process, including its start-up "
        f"(`amends --help` takes {startup:.2f} s here); HTTP and floor seconds exclude building the bodies and rows"
    )
    notes.append("peak RSS: of the `amends ingest` child, or of the `amends serve` child over the whole HTTP run")
    notes.append(f"{os.cpu_count()} CPUs; HTTP: {args.clients} client threads in the benchmark process, one server")
    out.print(render(results, title))
    for note in notes:
        style = "green" if note.startswith("MET") else "red" if note.startswith("NOT MET") else None
        out.print(note, style=style)
    if args.out is not None:
        args.out.write_text(markdown(results, title, notes), encoding="utf-8")
        out.print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
