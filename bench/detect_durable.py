"""Benchmark of streaming detection with its state and incidents durable: events stored through the ledger
with the `Detector` watching, in the same transactions, on SQLite and PostgreSQL.

For N events of the sample world (the shop, the airline and the car service, merged in time order) and all
shipped rule packs, on each engine and each time into a fresh database, it times:

- ledger only: the events stored, `--commit-rows` per transaction, with no detector (the reference);
- ledger + detection: the same, with the detector evaluating every transaction's new events and writing
  its state entries, incidents and cursor in that transaction (the `events` clock, so the watermark
  follows the events, with two hours of allowed lateness);

Events are validated and serialised for the engine before the clock runs: both rows time the store and
the evaluation, nothing else. "detection alone" is the difference, as events/s of the detection work.
The issue's target is >= 100,000 events/s for streaming with state and incidents durable, on one core.

Run (from the repository root):

    .venv/bin/python bench/detect_durable.py --events 1000000
    .venv/bin/python bench/detect_durable.py --events 200000 --engines sqlite --out bench/out/durable.md
"""

from __future__ import annotations

import argparse
import heapq
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from amends.detect import Detector, load_rules
from amends.detect.packs import PACKS, pack_paths
from amends.events import Event, validate_event
from amends.events.ledger import LedgerRows, append_rows, ledger_rows
from amends.store import Database, upgrade
from amends.world import generate_world
from ingest import DEFAULT_POSTGRES_URL, fresh_database  # bench/ is on the path when a script here runs

TARGET = 100_000  # events/s, streaming with state and incidents durable
EVENTS_PER_CUSTOMER = {"shop": 17, "airline": 20, "car_service": 8}  # over 180 days, measured on the world
out = Console(highlight=False, width=160)


def world_events(count: int, *, seed: int) -> list[Event]:
    """`count` events of the three businesses, merged in time order (each world is in time order)."""
    share = count // 3 + 1
    streams = [
        generate_world(business, customers=max(10, share // per_customer), days=180, seed=seed)
        for business, per_customer in EVENTS_PER_CUSTOMER.items()
    ]
    merged: Iterator[dict[str, Any]] = heapq.merge(*streams, key=lambda envelope: envelope["time"])
    events = []
    for envelope in islice(merged, count):
        event = validate_event(envelope)
        assert isinstance(event, Event), event
        events.append(event)
    return events


@dataclass
class Measured:
    engine: str
    what: str
    events: int
    seconds: float
    incidents: int | None = None
    state_rows: int | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def store_all(url: str, chunks: list[LedgerRows], detector: Detector | None) -> float:
    db = Database(url)
    try:
        upgrade(db)
        started = time.perf_counter()
        for rows in chunks:
            with db.unit_of_work(writes=True) as uow:
                append_rows(uow, rows, detector)
                uow.commit()
        return time.perf_counter() - started
    finally:
        db.dispose()


def count(url: str, table: str) -> int:
    db = Database(url)
    try:
        with db.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one())
    finally:
        db.dispose()


def measure(engine: str, events: list[Event], args: argparse.Namespace, workdir: Path) -> list[Measured]:
    dialect = "sqlite" if engine == "sqlite" else "postgresql"
    received = datetime.now(UTC)
    chunks = [
        ledger_rows(events[start : start + args.commit_rows], dialect=dialect, received_at=received)
        for start in range(0, len(events), args.commit_rows)
    ]
    rules = load_rules(pack_paths(PACKS))
    results = []
    with fresh_database(engine, workdir, args.postgres_url) as url:
        results.append(Measured(engine, "ledger only", len(events), store_all(url, chunks, None)))
    with fresh_database(engine, workdir, args.postgres_url) as url:
        detector = Detector(rules, lateness=timedelta(hours=2), clock="events")
        seconds = store_all(url, chunks, detector)
        results.append(
            Measured(
                engine,
                f"ledger + detection ({len(rules)} rules)",
                len(events),
                seconds,
                count(url, "incidents"),
                count(url, "detect_state"),
            )
        )
    plain, detected = results
    detection_only = detected.seconds - plain.seconds
    results.append(Measured(engine, "detection alone (difference)", len(events), max(detection_only, 1e-9)))
    return results


def render(results: list[Measured], title: str) -> Table:
    table = Table(title=title)
    for column in ("engine", "path", "events", "seconds", "events/s", "incidents", "state rows", "target"):
        table.add_column(column, justify="left" if column in ("engine", "path") else "right")
    for result in results:
        durable = result.what.startswith("ledger + detection")
        target = f"{result.rate / TARGET:.2f} x {TARGET:,}" if durable else ""
        table.add_row(
            result.engine,
            result.what,
            f"{result.events:,}",
            f"{result.seconds:.1f}",
            f"{result.rate:,.0f}",
            "" if result.incidents is None else f"{result.incidents:,}",
            "" if result.state_rows is None else f"{result.state_rows:,}",
            target,
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--commit-rows", type=int, default=10_000)
    parser.add_argument("--postgres-url", default=os.environ.get("AMENDS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    events = world_events(args.events, seed=args.seed)
    out.print(f"{len(events):,} events of the sample world generated in {time.perf_counter() - started:.0f} s")
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="amends-bench-") as workdir:
        for engine in args.engines.split(","):
            results += measure(engine, events, args, Path(workdir))
            out.print(render(results, "Streaming detection, durable"))
    table = render(results, f"Streaming detection with state and incidents durable, {len(events):,} events")
    out.print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        recorder = Console(record=True, width=160, file=open(os.devnull, "w"))  # noqa: SIM115
        recorder.print(table)
        args.out.write_text(recorder.export_text())


if __name__ == "__main__":
    main()
