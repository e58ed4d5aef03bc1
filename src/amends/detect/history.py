"""Stored history for the batch evaluator: the ledger between two instants, as the frame it takes.

On PostgreSQL the rows come through its ADBC driver as Arrow record batches, a bounded number at a time, and are
converted column by column (no Python object per row), by several connections at once. On SQLite they come
through Python's own sqlite3, the copy of SQLite the store writes with (see `_read_sqlite`). Only the frame being
built and one batch are in memory at once; a progress callback hears of every batch. Reads only: it never writes
and commits nothing.
"""

# The SQL is this module's own text; every value (instants, types, seq bounds) is bound as a parameter.
# ruff: noqa: S608

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import Any

import adbc_driver_postgresql.dbapi  # type: ignore[import-untyped]
import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]
from adbc_driver_manager import dbapi as adbc

from amends.detect.batch import FRAME_SCHEMA
from amends.errors import Unavailable
from amends.store import Database

__all__ = ["DEFAULT_CHUNK_ROWS", "Progress", "read_history"]

DEFAULT_CHUNK_ROWS = 100_000
_ROW_BYTES = 400  # about what one ledger row takes in Arrow: turns rows into PostgreSQL's batch size hint

Progress = Callable[[int, int], None]  # (rows read so far, rows in all)


def read_history(
    db: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    types: Collection[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    parallel: int = 2,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """The stored events with `since <= time < until` (either bound optional), and of `types` only if given,
    as a frame of `batch.FRAME_SCHEMA` for `evaluate_history`. Rows are in no particular order.

    On PostgreSQL, `parallel` connections read a share of the ledger each (by `seq`), in threads: the driver
    converts rows to Arrow without holding the GIL. `progress` is called in the caller's thread, first with
    (0, total), then after every batch. `since` and `until` are aware instants. Raises Unavailable when the database
    cannot be read.
    """
    if chunk_rows < 1 or parallel < 1:
        raise ValueError(f"chunk_rows and parallel must be at least 1, got {chunk_rows} and {parallel}")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be an aware datetime, got {value.isoformat()}")
    if db.is_sqlite:
        return _read_sqlite(db, since=since, until=until, types=types, chunk_rows=chunk_rows, progress=progress)
    reader = _PostgreSQL(db)
    where, params = reader.where(since, until, sorted(types) if types is not None else None)
    with _translated(), reader.connect() as connection, connection.cursor() as cursor:
        # An exact total costs a scan when there is a filter (SQLite has no index on time); without one,
        # SQLite counts from its smallest index. The `seq` bounds come from the primary key's ends.
        cursor.execute(f"SELECT count(*) FROM events{where}", params)
        counted = cursor.fetchone()
        cursor.execute("SELECT min(seq), max(seq) FROM events")
        bounds = cursor.fetchone()
    total = 0 if counted is None else int(counted[0])
    if progress is not None:
        progress(0, total)
    if not total or bounds is None or bounds[0] is None:
        return pl.DataFrame(schema=FRAME_SCHEMA)
    low, high = int(bounds[0]), int(bounds[1])
    step = (high - low) // parallel + 1
    shares = [(low + n * step, low + (n + 1) * step) for n in range(parallel)]
    batches: queue.Queue[tuple[int, pl.DataFrame | BaseException | None]] = queue.Queue()

    def read(share: int) -> None:
        first, last = shares[share]
        try:
            with _translated(), reader.connect() as connection, connection.cursor() as cursor:
                reader.chunked(cursor, chunk_rows)
                sql = f"SELECT {reader.columns} FROM events{reader.seq_range(where, len(params))}"
                cursor.execute(sql, [*params, first, last])
                for batch in cursor.fetch_record_batch():
                    batches.put((share, reader.frame(batch)))
            batches.put((share, None))
        except BaseException as exc:  # handed to the caller's thread, which raises it
            batches.put((share, exc))

    frames: list[list[pl.DataFrame]] = [[] for _ in shares]
    threads = [threading.Thread(target=read, args=(n,), name=f"history-{n}") for n in range(parallel)]
    for thread in threads:
        thread.start()
    done, running = 0, parallel
    try:
        while running:
            share, item = batches.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                frames[share].append(item)
                done += item.height
                if progress is not None:
                    progress(done, max(total, done))
    finally:
        for thread in threads:
            thread.join()
    return pl.concat([frame for share in frames for frame in share], rechunk=False)


def _read_sqlite(
    db: Database,
    *,
    since: datetime | None,
    until: datetime | None,
    types: Collection[str] | None,
    chunk_rows: int,
    progress: Progress | None,
) -> pl.DataFrame:
    """SQLite through Python's own sqlite3, the same copy of SQLite the store writes with: two copies of SQLite in
    one process do not share their file locks, and a reader of the other copy can miss what was just committed to
    the write-ahead log (https://www.sqlite.org/howtocorrupt.html, 2.2.1). Times are UTC wall-clock text, `data`
    JSON text; rows come `chunk_rows` at a time."""
    where, params = _where("?", since, until, sorted(types) if types is not None else None, _sqlite_instant)
    columns = ["ord", "id", "source", "type", "t", "subject", "data"]
    frames: list[pl.DataFrame] = []
    try:
        with closing(sqlite3.connect(str(db.url.database), timeout=30)) as connection:
            total = int(connection.execute(f"SELECT count(*) FROM events{where}", params).fetchone()[0])
            if progress is not None:
                progress(0, total)
            cursor = connection.execute(
                f"SELECT dedup_key, event_id, source, type, time, subject, data FROM events{where}", params
            )
            done = 0
            while rows := cursor.fetchmany(chunk_rows):
                frame = pl.DataFrame(rows, schema=columns, orient="row")
                frames.append(frame.with_columns(pl.col("t").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")))
                done += len(rows)
                if progress is not None:
                    progress(done, max(total, done))
    except sqlite3.OperationalError as exc:
        raise Unavailable(f"database unavailable: {exc}") from exc
    if not frames:
        return pl.DataFrame(schema=FRAME_SCHEMA)
    return pl.concat(frames, rechunk=False).cast(FRAME_SCHEMA)  # type: ignore[arg-type]


class _PostgreSQL:
    """PostgreSQL gives `timestamptz` as Arrow timestamps in UTC; `data` is asked for as text, which the driver
    passes through, rather than as jsonb, which it would wrap."""

    columns = "dedup_key AS ord, event_id AS id, source, type, time AS t, subject, data::text AS data"

    def __init__(self, db: Database) -> None:
        self.uri = db.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def connect(self) -> adbc.Connection:
        connection: adbc.Connection = adbc_driver_postgresql.dbapi.connect(self.uri)
        return connection

    def where(self, since: datetime | None, until: datetime | None, types: list[str] | None) -> tuple[str, list[Any]]:
        return _where("${n}::timestamptz", since, until, types, _pg_instant, type_placeholder="${n}")

    @staticmethod
    def seq_range(where: str, bound: int) -> str:
        test = f"seq >= ${bound + 1} AND seq < ${bound + 2}"
        return f"{where} AND {test}" if where else f" WHERE {test}"

    @staticmethod
    def chunked(cursor: adbc.Cursor, rows: int) -> None:
        hint = str(rows * _ROW_BYTES)
        cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": hint})

    @staticmethod
    def frame(batch: pa.RecordBatch) -> pl.DataFrame:
        frame = _polars(batch)
        return frame.with_columns(pl.col("t").dt.convert_time_zone("UTC").dt.replace_time_zone(None))


def _where(
    instant_placeholder: str,
    since: datetime | None,
    until: datetime | None,
    types: list[str] | None,
    instant: Callable[[datetime], str],
    *,
    type_placeholder: str = "?",
) -> tuple[str, list[Any]]:
    """The WHERE clause (with its leading space, or empty) and its parameters, in order."""
    tests: list[str] = []
    params: list[Any] = []

    def placeholder(pattern: str) -> str:
        return pattern.replace("{n}", str(len(params)))

    if since is not None:
        params.append(instant(since))
        tests.append(f"time >= {placeholder(instant_placeholder)}")
    if until is not None:
        params.append(instant(until))
        tests.append(f"time < {placeholder(instant_placeholder)}")
    if types is not None:
        if not types:
            tests.append("false")
        else:
            marks = []
            for event_type in types:
                params.append(event_type)
                marks.append(placeholder(type_placeholder))
            tests.append(f"type IN ({', '.join(marks)})")
    return (" WHERE " + " AND ".join(tests) if tests else ""), params


def _sqlite_instant(value: datetime) -> str:
    # The form the ledger writes (events/ledger.py): UTC wall time, always with microseconds.
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def _pg_instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _polars(batch: pa.RecordBatch) -> pl.DataFrame:
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    return frame


@contextmanager
def _translated() -> Iterator[None]:
    """The driver's errors as amends' own, where they enter."""
    try:
        yield
    except (adbc.OperationalError, adbc.InterfaceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Unavailable(f"database unavailable: {first}") from exc
