"""How fast can SQLite itself write the event ledger on this machine? The ceiling under `amends ingest`.

The rows are the ones `amends ingest` writes (generated events, validated, serialised by
`events.ledger.ledger_rows`), prepared before any clock runs. Each variant then inserts them into a fresh
database made by the project's own migrations, with the project's pragmas (WAL, synchronous=FULL, the page
cache of `sqlite_cache_mib`), --commit-rows per transaction, through the bare `sqlite3` driver:

- executemany: one prepared statement, one bind and step per row (no SQLAlchemy in between);
- json_each: the rows as one JSON array per 10,000 rows, unpacked by SQLite (what amends does);

each with the schema as it is (the unique dedup key and the (subject, time, seq) index), and again into a
copy of the table without them, to show what keeping them costs. Only the inserts and commits are timed:
no parsing, no validation, no Python work per row beyond the driver's binding.

    .venv/bin/python bench/sqlite_floor.py --events 1000000
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from amends.events import validate_event
from amends.events.envelope import Event
from amends.events.ledger import ledger_rows
from amends.store import Database, upgrade

sys.path.insert(0, str(Path(__file__).parent))
from ingest import generate, read_lines

INSERT = "INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"
INSERT_JSON = "INSERT INTO {table} ({names}) SELECT {values} FROM json_each(?) WHERE true ON CONFLICT DO NOTHING"
COLUMNS = ("dedup_key", "source", "event_id", "type", "time", "subject", "data", "attributes", "received_at")
JSON_ROWS = 10_000


def prepare(path: Path, batch: int) -> list[list[tuple[object, ...]]]:
    received = datetime.now(UTC)
    groups = []
    for lines in read_lines(path, batch):
        events = [validate_event(orjson.loads(line)) for line in lines]
        valid = [event for event in events if isinstance(event, Event)]
        groups.append(ledger_rows(valid, dialect="sqlite", received_at=received).events)
    return groups


def measure(workdir: Path, groups: list[list[tuple[object, ...]]], *, indexed: bool, json_each: bool) -> float:
    path = workdir / f"floor-{indexed}-{json_each}.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    with db.engine.connect() as connection:  # the project's pragmas, on a connection of its own pool
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.isolation_level = None
        table = "events"
        if not indexed:  # the same columns, without the unique key and the index (nor the table's primary key)
            table = "events_unindexed"
            driver.execute(f"CREATE TABLE {table} AS SELECT * FROM events WHERE false")
        names = ", ".join(COLUMNS)
        if json_each:
            values = ", ".join(f"value ->> {i}" for i in range(len(COLUMNS)))
            statement = INSERT_JSON.format(table=table, names=names, values=values)
        else:
            statement = INSERT.format(table=table, names=names, marks=", ".join("?" * len(COLUMNS)))
        started = time.perf_counter()
        for rows in groups:
            driver.execute("BEGIN")
            if json_each:
                for start in range(0, len(rows), JSON_ROWS):
                    driver.execute(statement, (orjson.dumps(rows[start : start + JSON_ROWS]).decode(),))
            else:
                driver.executemany(statement, rows)
            driver.execute("COMMIT")
        seconds = time.perf_counter() - started
    db.dispose()
    path.unlink()
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--commit-rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    out = Console()
    with tempfile.TemporaryDirectory(prefix="amends-floor-") as temporary:
        workdir = Path(temporary)
        source = workdir / "events.jsonl"
        generate(source, args.events, seed=args.seed)
        groups = prepare(source, args.commit_rows)
        source.unlink()
        table = Table(title=f"SQLite write floor, {args.events:,} events, {args.commit_rows:,} per commit")
        for column in ("driver path", "indexes", "µs/event", "events/s"):
            table.add_column(column, justify="right" if column in ("µs/event", "events/s") else "left")
        for json_each in (False, True):
            for indexed in (True, False):
                seconds = measure(workdir, groups, indexed=indexed, json_each=json_each)
                table.add_row(
                    "json_each" if json_each else "executemany",
                    "dedup key + subject" if indexed else "none",
                    f"{seconds / args.events * 1e6:.1f}",
                    f"{args.events / seconds:,.0f}",
                )
    out.print(table)
    out.print(f"SQLite {sqlite3.sqlite_version}; only inserts and commits timed; rows prepared beforehand")
    return 0


if __name__ == "__main__":
    sys.exit(main())
