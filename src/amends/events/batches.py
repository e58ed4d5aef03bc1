"""Ingestion of one request's worth of events: decode the body, validate each item, store the valid ones.

A batch is stored in one transaction: when this returns, every accepted event is durable, and if the
database fails nothing of the batch is written. One bad item never costs the others their place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from amends.errors import InvalidInput
from amends.events.envelope import Event, Violation, validate_event
from amends.events.errors import BatchTooLarge, MalformedJSON
from amends.events.ledger import LedgerWatcher, append_rows, ledger_rows
from amends.store import Database

__all__ = ["BatchFormat", "BatchReport", "Item", "Rejected", "decode_batch", "ingest_items", "validate_items"]


class BatchFormat(StrEnum):
    """How a request carries its events."""

    EVENT = "event"  # one JSON object
    ARRAY = "array"  # a JSON array of objects
    JSON = "json"  # either of the above
    NDJSON = "ndjson"  # one JSON object per line


@dataclass(frozen=True, slots=True)
class Item:
    """One decoded item of a batch, or why it could not be decoded. `line` is set for NDJSON."""

    value: Any = None
    problem: Violation | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item that was not stored: its position in the batch (from 0), the field and the reason."""

    index: int
    field: str
    reason: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What became of a batch."""

    accepted: int = 0
    duplicates: int = 0
    rejected: tuple[Rejected, ...] = field(default=())


def decode_batch(body: bytes, batch_format: BatchFormat, *, max_events: int) -> list[Item]:
    """Decode a request body into items.

    Raises MalformedJSON when a JSON body does not parse (an NDJSON line that does not parse is only
    that item's problem), InvalidInput when the body has the wrong shape, BatchTooLarge over the limit.
    """
    if batch_format is BatchFormat.NDJSON:
        return _decode_ndjson(body, max_events=max_events)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(exc.msg, line=exc.lineno, column=exc.colno, position=exc.pos) from exc
    if isinstance(value, dict) and batch_format is not BatchFormat.ARRAY:
        return [Item(value)]
    if isinstance(value, list) and batch_format is not BatchFormat.EVENT:
        if len(value) > max_events:
            raise BatchTooLarge("body", f"{len(value)} events in one batch; the limit is {max_events}")
        return [Item(v) for v in value]
    expected = {
        BatchFormat.EVENT: "an event object",
        BatchFormat.ARRAY: "an array of events",
        BatchFormat.JSON: "an event object or an array of events",
    }[batch_format]
    raise InvalidInput("body", f"expected {expected}")


def _decode_ndjson(body: bytes, *, max_events: int) -> list[Item]:
    items: list[Item] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(items) == max_events:
            raise BatchTooLarge("body", f"more than {max_events} events in one batch")
        try:
            items.append(Item(orjson.loads(raw), line=number))
        except orjson.JSONDecodeError as exc:
            reason = f"malformed JSON at column {exc.colno}: {exc.msg}"
            items.append(Item(problem=Violation("event", reason), line=number))
    return items


def validate_items(items: Sequence[Item]) -> tuple[list[Event], list[Rejected]]:
    """The valid events of a batch, and the items rejected with their field and reason."""
    valid: list[Event] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        outcome = item.problem or validate_event(item.value)
        if isinstance(outcome, Event):
            valid.append(outcome)
        else:
            rejected.append(Rejected(index, outcome.field, outcome.reason, item.line))
    return valid, rejected


def ingest_items(
    db: Database, items: Sequence[Item], *, received_at: datetime, watcher: LedgerWatcher | None = None
) -> BatchReport:
    """Validate the items and store the valid ones in one transaction (which `watcher` sees, if given)."""
    valid, rejected = validate_items(items)
    if not valid:
        return BatchReport(0, 0, tuple(rejected))
    rows = ledger_rows(valid, dialect=db.dialect, received_at=received_at)  # before taking the write lock
    with db.unit_of_work(writes=True) as uow:
        appended = append_rows(uow, rows, watcher)
        uow.commit()
    return BatchReport(appended.accepted, appended.duplicates, tuple(rejected))
