"""Reading the remedy ledger: pages of entries newest first, and a CSV export for finance, oldest first.

The export is opened in spreadsheets, so every text cell goes through `safe_cell` (OWASP "CSV Injection"):
a customer id or note that begins like a formula is written as text. Numbers we write ourselves never do.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from amends.errors import InvalidInput
from amends.recover.remedies import LedgerEntry, entry_from_row
from amends.store import UnitOfWork, tables
from amends.store.paging import decode_cursor, encode_cursor

__all__ = ["CSV_COLUMNS", "LedgerFilter", "export_csv", "list_ledger", "safe_cell"]

_ledger = tables.ledger
_MAX_LIMIT = 1000
_EXPORT_BATCH = 1000

CSV_COLUMNS = (
    "id",
    "at",
    "case_id",
    "slot",
    "customer_id",
    "incident_id",
    "kind",
    "amount",
    "unit",
    "cash_value",
    "policy",
    "granted_by",
    "approval_id",
    "reverses_id",
    "note",
)

# What a spreadsheet may take for the start of a formula (OWASP): =, +, -, @, tab and carriage return.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """Which entries to read; every field narrows. `since`/`until` bound `at` (until excluded)."""

    kind: str | None = None
    granted_by: str | None = None
    case_id: int | None = None
    customer_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_ledger(
    uow: UnitOfWork, flt: LedgerFilter, *, limit: int = 100, cursor: str | None = None
) -> tuple[list[LedgerEntry], str | None]:
    """One page of the entries that pass `flt`, newest first by (at, id), and the cursor of the next page
    (None on the last one). InvalidInput for a limit outside 1..1000 or a cursor not from a previous page."""
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {_MAX_LIMIT}, got {limit}")
    query = sa.select(_ledger).where(*_conditions(flt))
    if cursor is not None:
        before_time, before_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(_ledger.c.at < before_time, sa.and_(_ledger.c.at == before_time, _ledger.c.id < before_id))
        )
    rows = uow.execute(query.order_by(_ledger.c.at.desc(), _ledger.c.id.desc()).limit(limit + 1)).all()
    page = [entry_from_row(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].at, page[-1].id) if len(rows) > limit else None
    return page, next_cursor


def export_csv(uow: UnitOfWork, flt: LedgerFilter) -> Iterator[str]:
    """Stream the entries that pass `flt` as CSV text: a chunk with the header row, then one chunk per batch
    of entries, oldest first by (at, id).

    Rows are fetched a batch at a time from one query, so memory stays flat however long the ledger is; the
    unit of work must stay open until the iterator is exhausted or closed. Text cells are made safe to open
    in a spreadsheet (`safe_cell`); ids and amounts are written as plain numbers, reversals with a minus.
    """
    conditions = _conditions(flt)  # before the first chunk, so bad input fails at the call
    return _export(uow, conditions)


def safe_cell(value: object) -> str:
    """The text of a CSV cell that no spreadsheet will read as a formula: None is empty, and text that
    begins with =, +, -, @, a tab or a carriage return gets a leading single quote.

    Only for text: a negative number through here would come out as text ('-12.50), so the export writes
    its own numbers directly.
    """
    if value is None:
        return ""
    text = str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


# --- inside ----------------------------------------------------------------------------------------------


def _conditions(flt: LedgerFilter) -> list[sa.ColumnElement[bool]]:
    if flt.since is not None and flt.until is not None and flt.since >= flt.until:
        raise InvalidInput("since", "must be before until")
    conditions: list[sa.ColumnElement[bool]] = []
    if flt.kind is not None:
        conditions.append(_ledger.c.kind == flt.kind)
    if flt.granted_by is not None:
        conditions.append(_ledger.c.granted_by == flt.granted_by)
    if flt.case_id is not None:
        conditions.append(_ledger.c.case_id == flt.case_id)
    if flt.customer_id is not None:
        conditions.append(_ledger.c.customer_id == flt.customer_id)
    if flt.since is not None:
        conditions.append(_ledger.c.at >= flt.since)
    if flt.until is not None:
        conditions.append(_ledger.c.at < flt.until)
    return conditions


def _export(uow: UnitOfWork, conditions: list[sa.ColumnElement[bool]]) -> Iterator[str]:
    yield _csv_text([CSV_COLUMNS])
    query = (
        sa.select(_ledger)
        .where(*conditions)
        .order_by(_ledger.c.at, _ledger.c.id)
        # A server-side cursor on PostgreSQL: the rows come over in batches, all from one snapshot.
        .execution_options(yield_per=_EXPORT_BATCH)
    )
    result = uow.execute(query)
    try:
        for batch in result.partitions():
            yield _csv_text([_csv_record(entry_from_row(row)) for row in batch])
    finally:
        result.close()  # also when the reader stops early


def _csv_text(records: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(records)
    return buffer.getvalue()


def _csv_record(entry: LedgerEntry) -> tuple[str, ...]:
    return (
        str(entry.id),
        entry.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        str(entry.case_id),
        safe_cell(entry.slot),
        safe_cell(entry.customer_id),
        _number(entry.incident_id),
        safe_cell(entry.kind),
        str(entry.amount),
        safe_cell(entry.unit),
        str(entry.cash_value),
        safe_cell(entry.policy),
        safe_cell(entry.granted_by),
        _number(entry.approval_id),
        _number(entry.reverses_id),
        safe_cell(entry.note),
    )


def _number(value: int | None) -> str:
    return "" if value is None else str(value)
