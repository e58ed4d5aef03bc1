"""Ingestion of event files: JSONL, CSV and Parquet, streamed in chunks of rows.

Each chunk is stored in its own transaction before the next is read, so memory stays flat in the file
size and a chunk reported as stored survives a crash. Re-running a file stores nothing twice: events
are unique per (source, id), and flat rows without an id get one derived from their content.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import queue
import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from zoneinfo import ZoneInfo

import orjson

from amends.errors import InvalidInput
from amends.events.envelope import Event, Violation, validate_event
from amends.events.ledger import Appended, LedgerRows, LedgerWatcher, append_rows, ledger_rows
from amends.store import Database

__all__ = [
    "ColumnMapping",
    "EventSink",
    "FileFormat",
    "FileProgress",
    "FileReport",
    "LedgerSink",
    "ReadProgress",
    "Record",
    "RejectedRow",
    "ingest_file",
    "read_records",
]

# Envelope attributes a column can be mapped to.
ATTRIBUTES = ("id", "source", "type", "time", "subject", "datacontenttype", "dataschema")
# Rejections kept in the report; the count goes on beyond it (a file can have millions of bad rows).
KEPT_REJECTIONS = 1000


class FileFormat(StrEnum):
    """The file formats `ingest_file` reads."""

    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"

    @classmethod
    def of(cls, path: Path) -> FileFormat:
        """The format a file's name says it has."""
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            return cls.JSONL
        if suffix in (".csv", ".parquet"):
            return cls(suffix[1:])
        raise InvalidInput("--format", f"cannot tell the format of {path.name!r}; give jsonl, csv or parquet")

    @property
    def is_flat(self) -> bool:
        """Whether records are flat rows (columns) rather than envelopes."""
        return self is not FileFormat.JSONL


@dataclass(frozen=True)
class ColumnMapping:
    """How a file's records become envelopes.

    `columns` maps an envelope attribute to the record key holding it (`subject` <- `customer_id`);
    `constants` give an attribute one value for every record (`type` = `order.placed`) and win over
    columns. In flat records (CSV, Parquet, and JSONL read with `flat`) every other column goes into
    `data`; JSONL records are envelopes by default. `timezone` is given to times that have none.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    flat: bool = False
    timezone: ZoneInfo | None = None

    @classmethod
    def parse(
        cls,
        pairs: list[str],
        *,
        constants: Mapping[str, str | None] | None = None,
        flat: bool = False,
        timezone: str | None = None,
    ) -> ColumnMapping:
        """Build a mapping from `attribute=column` pairs, refusing what cannot work."""
        columns: dict[str, str] = {}
        for pair in pairs:
            attribute, sep, column = (part.strip() for part in pair.partition("="))
            if not sep or not attribute or not column:
                raise InvalidInput("--map", f"expected ATTRIBUTE=COLUMN, got {pair!r}")
            if attribute not in ATTRIBUTES:
                known = ", ".join(ATTRIBUTES)
                raise InvalidInput("--map", f"{attribute!r} is not an envelope attribute ({known})")
            if attribute in columns:
                raise InvalidInput("--map", f"{attribute!r} is mapped twice")
            columns[attribute] = column
        zone: ZoneInfo | None = None
        if timezone is not None:
            try:
                zone = ZoneInfo(timezone)
            except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
                raise InvalidInput("--timezone", f"unknown time zone {timezone!r}") from exc
        kept = {k: v for k, v in (constants or {}).items() if v is not None}
        return cls(columns=columns, constants=kept, flat=flat, timezone=zone)

    def envelope(self, record: dict[str, Any], *, flat: bool) -> dict[str, Any]:
        """Turn one record into an envelope to validate."""
        if flat or self.flat:
            return self._from_flat(record)
        if not self.columns and not self.constants and self.timezone is None:
            return record  # envelopes as they are: validation does not change its input
        envelope = dict(record)
        for attribute, column in self.columns.items():
            if column in envelope:
                envelope[attribute] = envelope.pop(column)
        envelope.update(self.constants)
        self._localise(envelope)
        return envelope

    def _from_flat(self, record: dict[str, Any]) -> dict[str, Any]:
        envelope: dict[str, Any] = dict(self.constants)
        used: set[str] = set()
        for attribute in ATTRIBUTES:
            if attribute in envelope:
                continue
            column = self.columns.get(attribute, attribute)
            value = record.get(column)
            if value is not None:
                envelope[attribute] = value
                used.add(column)
        envelope["data"] = {k: v for k, v in record.items() if k not in used and v is not None}
        self._localise(envelope)
        if "id" not in envelope:
            envelope["id"] = _content_id(envelope)
        return envelope

    def _localise(self, envelope: dict[str, Any]) -> None:
        value = envelope.get("time")
        if isinstance(value, str) and self.timezone is not None:
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return  # left for validation to report
        if isinstance(value, datetime):
            if value.tzinfo is None and self.timezone is not None:
                value = value.replace(tzinfo=self.timezone)
            envelope["time"] = value


def _content_id(envelope: dict[str, Any]) -> str:
    # A row without an id is named by its content, so that loading the same file twice stores it once.
    content = [envelope.get(k) for k in ("source", "type", "time", "subject")] + [envelope["data"]]
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str))
    return "sha256:" + digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a file: where it starts (line, or row for Parquet) and its value or problem."""

    line: int
    value: dict[str, Any] | None = None
    problem: Violation | None = None


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A record that was not stored: its line (row for Parquet), the field and the reason."""

    line: int
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class FileProgress:
    """Counts so far; everything counted as accepted is committed."""

    accepted: int
    duplicates: int
    rejected: int
    done: int  # bytes read (JSONL, CSV) or rows read (Parquet)
    total: int


@dataclass(frozen=True, slots=True)
class FileReport:
    """What became of a file. `rejections` keeps the first KEPT_REJECTIONS of `rejected`."""

    accepted: int
    duplicates: int
    rejected: int
    rejections: tuple[RejectedRow, ...]

    @property
    def rows(self) -> int:
        return self.accepted + self.duplicates + self.rejected


def ingest_file(
    db: Database,
    path: Path,
    *,
    received_at: datetime,
    file_format: FileFormat | None = None,
    mapping: ColumnMapping | None = None,
    commit_rows: int = 10_000,
    on_progress: Callable[[FileProgress], None] | None = None,
    on_rejected: Callable[[RejectedRow], None] | None = None,
    watcher: LedgerWatcher | None = None,
    sink: EventSink | None = None,
) -> FileReport:
    """Store the events of a file, `commit_rows` per transaction; report what became of each row.

    Reading and validating run on the calling thread while the previous group of rows is stored on a
    second one (the store's bulk insert runs without the GIL). `on_progress` and `on_rejected` are
    called on the calling thread; progress counts only what is committed. A `watcher` (detection) sees
    each group's new events in the transaction that stores them. A `sink` takes the groups instead of the
    ledger (broker mode publishes them: events.broker.BrokerSink).
    """
    file_format = file_format or FileFormat.of(path)
    mapping = mapping or ColumnMapping()
    records, read = read_records(path, file_format)
    total = path.stat().st_size if file_format is not FileFormat.PARQUET else _parquet_rows(path)
    appended = Appended()
    rejected = 0
    rejections: list[RejectedRow] = []
    chunk: list[Event] = []

    def report(stored: Iterable[tuple[Appended, int]]) -> None:
        nonlocal appended
        for part, done in stored:
            appended += part
            if on_progress is not None:
                on_progress(FileProgress(appended.accepted, appended.duplicates, rejected, done, total))

    sink = sink or LedgerSink(db, received_at=received_at, watcher=watcher)
    with closing(records), _ChunkWriter(sink) as writer, _without_cycle_collection():
        for record in records:
            outcome: Event | Violation
            if record.problem is not None:
                outcome = record.problem
            else:
                assert record.value is not None
                outcome = validate_event(mapping.envelope(record.value, flat=file_format.is_flat))
            if isinstance(outcome, Event):
                chunk.append(outcome)
                if len(chunk) >= commit_rows:
                    writer.submit(chunk, read.done)
                    chunk = []
                    report(writer.stored())
                continue
            rejected += 1
            row = RejectedRow(record.line, outcome.field, outcome.reason)
            if len(rejections) < KEPT_REJECTIONS:
                rejections.append(row)
            if on_rejected is not None:
                on_rejected(row)
        writer.submit(chunk, read.done)
    report(writer.stored())
    return FileReport(appended.accepted, appended.duplicates, rejected, tuple(rejections))


class EventSink(Protocol):
    """Where a file's valid events go, a group at a time: `prepare` runs on the reading thread, `store` on the
    writer's, and returns only once the group is durable."""

    def prepare(self, events: list[Event]) -> Any: ...

    def store(self, prepared: Any) -> Appended: ...


class LedgerSink:
    """The ledger: each group in its own transaction, seen by `watcher`."""

    def __init__(self, db: Database, *, received_at: datetime, watcher: LedgerWatcher | None = None) -> None:
        self.db = db
        self.received_at = received_at
        self.watcher = watcher

    def prepare(self, events: list[Event]) -> LedgerRows:
        # Serialised on the reading thread: the writer's should spend its time in the database, without the GIL.
        return ledger_rows(events, dialect=self.db.dialect, received_at=self.received_at)

    def store(self, prepared: LedgerRows) -> Appended:
        with self.db.unit_of_work(writes=True) as uow:
            appended = append_rows(uow, prepared, self.watcher)
            uow.commit()
        return appended


class _ChunkWriter:
    """Stores groups of events through a sink on a thread of its own, one at a time.

    `submit` waits while a group is still being stored (so at most two groups are held in memory) and
    raises the error that stopped the writer, if any. Leaving the block waits for the last group.
    """

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self._todo: queue.Queue[tuple[Any, int] | None] = queue.Queue(maxsize=1)
        self._stored: queue.SimpleQueue[tuple[Appended, int]] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="amends-ingest-writer", daemon=True)

    def __enter__(self) -> _ChunkWriter:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._put(None)
        self._thread.join()
        if exc is None:
            self._raise_if_failed()

    def submit(self, events: list[Event], done: int) -> None:
        """Queue a group to be stored; `done` is how far the reader had got when it ended. The sink prepares it
        here, on the calling thread."""
        if events:
            self._put((self._sink.prepare(events), done))

    def stored(self) -> list[tuple[Appended, int]]:
        """The groups committed since the last call: what was appended, and the reader's position."""
        out = []
        while not self._stored.empty():
            out.append(self._stored.get())
        return out

    def _put(self, item: tuple[Any, int] | None) -> None:
        while self._thread.is_alive():
            try:
                self._todo.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if item is not None:
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while (item := self._todo.get()) is not None:
                prepared, done = item
                self._stored.put((self._sink.store(prepared), done))
        except BaseException as exc:  # handed to the calling thread, which raises it
            self._error = exc


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    # Parsing allocates millions of small objects with no reference cycles; with a group of events
    # alive, Python's cycle collector would keep scanning them all for nothing (a sixth of the time).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class ReadProgress:
    """How far a reader has got: bytes for JSONL and CSV, rows for Parquet."""

    done: int = 0


def read_records(path: Path, file_format: FileFormat) -> tuple[Generator[Record], ReadProgress]:
    """Stream the records of a file, each with the line (or Parquet row) it starts on."""
    try:
        if file_format is FileFormat.PARQUET:
            _check_parquet(path)
        stream = open(path, "rb")  # noqa: SIM115 - the reader closes it
    except OSError as exc:
        raise InvalidInput(str(path), f"cannot be read: {exc}") from exc
    progress = ReadProgress()
    readers = {FileFormat.JSONL: _jsonl, FileFormat.CSV: _csv, FileFormat.PARQUET: _parquet}
    return readers[file_format](path, stream, progress), progress


def _jsonl(path: Path, stream: BinaryIO, progress: ReadProgress) -> Generator[Record]:
    with stream:
        for number, raw in enumerate(stream, start=1):
            progress.done += len(raw)
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield Record(number, problem=Violation("line", f"malformed JSON at column {exc.colno}: {exc.msg}"))
                continue
            if not isinstance(value, dict):
                yield Record(number, problem=Violation("line", "expected a JSON object"))
                continue
            yield Record(number, value)


# A cell becomes a number only when it reads as one without loss: "0042" and "1e5" stay text.
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]+")


def _cell(text: str) -> Any:
    if not text:
        return None
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def _csv(path: Path, stream: BinaryIO, progress: ReadProgress) -> Generator[Record]:
    def lines() -> Iterator[str]:
        for raw in stream:
            progress.done += len(raw)
            try:
                yield raw.decode("utf-8-sig" if progress.done == len(raw) else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(str(path), f"is not UTF-8 text: {exc}") from exc

    with stream:
        reader = csv.reader(lines(), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInput(str(path), f"line 1: {exc}") from exc
        if len(set(header)) != len(header):
            raise InvalidInput(str(path), "line 1: the header names a column twice")
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Record(start, problem=Violation("line", str(exc)))
                start = reader.line_num + 1
                continue
            if cells:
                if len(cells) != len(header):
                    reason = f"{len(cells)} cells where the header has {len(header)}"
                    yield Record(start, problem=Violation("line", reason))
                else:
                    yield Record(start, {name: _cell(text) for name, text in zip(header, cells, strict=True)})
            start = reader.line_num + 1


# Parquet is read with PyArrow, imported where it is read (a large import most runs never need). Polars' reader
# aborts the whole process on some damaged files (a page header that asks for exabytes: Rust cannot recover from a
# failed allocation); PyArrow's raises, and the file is refused.


def _check_parquet(path: Path) -> None:
    _parquet_file(path)


def _parquet_file(path: Path) -> Any:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:  # ValueError: a name in the footer that is not UTF-8
        raise InvalidInput(str(path), f"cannot be read: {_first_line(exc)}") from exc


def _parquet_rows(path: Path) -> int:
    return int(_parquet_file(path).metadata.num_rows)


def _parquet(path: Path, stream: BinaryIO, progress: ReadProgress) -> Generator[Record]:
    import pyarrow as pa

    stream.close()  # PyArrow reads the file itself; the handle only proved it can be opened
    row = 0
    batches = _parquet_file(path).iter_batches(batch_size=10_000)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError, ValueError) as exc:  # damaged pages: what came before them is kept
            raise InvalidInput(str(path), f"row {row + 1} on cannot be read: {_first_line(exc)}") from exc
        try:
            rows: list[dict[str, Any] | str] = batch.to_pylist()
        except (ValueError, OverflowError, pa.ArrowException):  # a value Python cannot hold: find its rows
            rows = [_parquet_row(batch, index) for index in range(batch.num_rows)]
        for values in rows:
            row += 1
            progress.done = row
            if isinstance(values, str):
                yield Record(row, problem=Violation("row", values))
                continue
            try:
                yield Record(row, {k: _jsonable(v) for k, v in values.items()})
            except ValueError as exc:
                yield Record(row, problem=Violation("row", str(exc)))


def _parquet_row(batch: Any, index: int) -> dict[str, Any] | str:
    """One row of a batch as Python values, or why it cannot be one (a timestamp past the year 9999)."""
    import pyarrow as pa

    try:
        values: dict[str, Any] = batch.slice(index, 1).to_pylist()[0]
    except (ValueError, OverflowError, pa.ArrowException) as exc:
        return f"a value cannot be read: {_first_line(exc)}"
    return values


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _jsonable(value: Any) -> Any:
    """A Parquet value as JSON can hold it; times stay datetimes for the envelope to check."""
    match value:
        case int() if not isinstance(value, bool) and not -(2**63) <= value < 2**64:  # Int128: JSON keeps 64 bits
            raise ValueError(f"the integer {value} is beyond 64 bits; JSON numbers here hold 64")
        case None | str() | bool() | int() | float() | datetime():
            return value
        case date() | time():
            return value.isoformat()
        case Decimal():
            return float(value)
        case list():
            return [_jsonable(v) for v in value]
        case dict():
            return {str(k): _jsonable(v) for k, v in value.items()}
    raise ValueError(f"a value of type {type(value).__name__} cannot be kept as JSON")
