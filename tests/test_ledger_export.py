"""Reading the remedy ledger: filters, pages newest first, and a CSV export that is safe to open in a
spreadsheet, on both engines."""

from __future__ import annotations

import csv
import io
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from amends.errors import InvalidInput
from amends.recover.ledger import CSV_COLUMNS, LedgerFilter, export_csv, list_ledger, safe_cell
from amends.store import Database, UnitOfWork, tables

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def write(uow: UnitOfWork, key: str, **columns: Any) -> int:
    values: dict[str, Any] = {
        "entry_key": key,
        "case_id": 1,
        "slot": "case",
        "customer_id": "C-1",
        "incident_id": None,
        "kind": "credit",
        "amount": Decimal("10.00"),
        "unit": "EUR",
        "cash_value": Decimal("10.00"),
        "policy": "late-delivery",
        "granted_by": "ann",
        "at": T0,
        **columns,
    }
    return int(uow.execute(sa.insert(tables.ledger).values(**values).returning(tables.ledger.c.id)).scalar_one())


def build_ledger(db: Database) -> dict[str, int]:
    with db.unit_of_work() as uow:
        ids = {
            "credit": write(uow, "case:1:a", amount=Decimal("12.50"), cash_value=Decimal("12.50"), incident_id=7),
            "miles": write(
                uow,
                "case:2:a",
                case_id=2,
                customer_id="C-2",
                kind="miles",
                amount=Decimal(6000),
                unit="miles",
                cash_value=Decimal("60.00"),
                granted_by="bob",
                approval_id=3,
                at=T0 + HOUR,
            ),
            "voucher": write(uow, "case:3:a", case_id=3, customer_id="C-3", kind="voucher", at=T0 + 2 * HOUR),
        }
        ids["reversal"] = write(
            uow,
            f"reverse:{ids['credit']}",
            amount=Decimal("-12.50"),
            cash_value=Decimal("-12.50"),
            incident_id=7,
            granted_by="max",
            reverses_id=ids["credit"],
            note="granted twice by mistake",
            at=T0 + 3 * HOUR,
        )
        uow.commit()
    return ids


def exported(db: Database, flt: LedgerFilter | None = None) -> list[list[str]]:
    with db.unit_of_work() as uow:
        text = "".join(export_csv(uow, flt or LedgerFilter()))
    return list(csv.reader(io.StringIO(text)))


# --- listing ---------------------------------------------------------------------------------------------


def test_the_ledger_lists_newest_first_with_every_column(db: Database) -> None:
    ids = build_ledger(db)
    with db.unit_of_work() as uow:
        rows, cursor = list_ledger(uow, LedgerFilter())
    assert cursor is None
    assert [r.id for r in rows] == [ids["reversal"], ids["voucher"], ids["miles"], ids["credit"]]
    reversal = rows[0]
    assert reversal.amount == Decimal("-12.50")
    assert reversal.cash_value == Decimal("-12.50")
    assert reversal.reverses_id == ids["credit"]
    assert reversal.entry_key == f"reverse:{ids['credit']}"
    assert reversal.at == T0 + 3 * HOUR
    assert rows[2].amount == Decimal("6000.00")
    assert rows[2].approval_id == 3


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (LedgerFilter(kind="credit"), ["reversal", "credit"]),
        (LedgerFilter(granted_by="bob"), ["miles"]),
        (LedgerFilter(case_id=1), ["reversal", "credit"]),
        (LedgerFilter(customer_id="C-3"), ["voucher"]),
        (LedgerFilter(since=T0 + HOUR), ["reversal", "voucher", "miles"]),
        (LedgerFilter(until=T0 + 2 * HOUR), ["miles", "credit"]),  # until is excluded
        (LedgerFilter(kind="credit", granted_by="ann"), ["credit"]),
        (LedgerFilter(kind="upgrade"), []),
    ],
)
def test_every_filter_narrows_the_list(db: Database, flt: LedgerFilter, expected: list[str]) -> None:
    ids = build_ledger(db)
    with db.unit_of_work() as uow:
        rows, _cursor = list_ledger(uow, flt)
    assert [r.id for r in rows] == [ids[name] for name in expected]


def test_pages_follow_the_cursor_to_the_end_without_gaps_or_repeats(db: Database) -> None:
    with db.unit_of_work() as uow:
        # Two entries share each instant: the id breaks the tie.
        written = [write(uow, f"k{n}", at=T0 + (n // 2) * HOUR) for n in range(7)]
        uow.commit()
    seen: list[int] = []
    pages = 0
    cursor: str | None = None
    with db.unit_of_work() as uow:
        while True:
            rows, cursor = list_ledger(uow, LedgerFilter(), limit=3, cursor=cursor)
            pages += 1
            assert len(rows) <= 3
            seen += [r.id for r in rows]
            if cursor is None:
                break
    assert pages == 3
    assert seen == sorted(written, reverse=True)


def test_a_full_last_page_has_no_cursor(db: Database) -> None:
    with db.unit_of_work() as uow:
        for n in range(4):
            write(uow, f"k{n}", at=T0 + n * HOUR)
        uow.commit()
    with db.unit_of_work() as uow:
        first, cursor = list_ledger(uow, LedgerFilter(), limit=2)
        assert cursor is not None
        second, last = list_ledger(uow, LedgerFilter(), limit=2, cursor=cursor)
    assert [r.at for r in first + second] == [T0 + n * HOUR for n in (3, 2, 1, 0)]
    assert last is None


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_a_limit_outside_one_to_a_thousand_is_refused(db: Database, limit: int) -> None:
    with db.unit_of_work() as uow, pytest.raises(InvalidInput) as caught:
        list_ledger(uow, LedgerFilter(), limit=limit)
    assert caught.value.field == "limit"


def test_a_cursor_not_from_a_page_and_an_empty_window_are_refused(db: Database) -> None:
    with db.unit_of_work() as uow:
        with pytest.raises(InvalidInput) as cursor:
            list_ledger(uow, LedgerFilter(), cursor="not-a-cursor")
        with pytest.raises(InvalidInput) as window:
            list_ledger(uow, LedgerFilter(since=T0, until=T0))
        with pytest.raises(InvalidInput):
            export_csv(uow, LedgerFilter(since=T0 + HOUR, until=T0))
    assert cursor.value.field == "cursor"
    assert window.value.field == "since"


# --- export ----------------------------------------------------------------------------------------------


def test_the_export_writes_a_header_then_every_entry_oldest_first(db: Database) -> None:
    ids = build_ledger(db)
    table = exported(db)
    assert table[0] == list(CSV_COLUMNS)
    records = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert [int(r["id"]) for r in records] == [ids["credit"], ids["miles"], ids["voucher"], ids["reversal"]]
    credit, miles, _voucher, reversal = records
    assert credit["at"] == "2026-05-01T09:00:00Z"
    assert credit["incident_id"] == "7"
    assert credit["approval_id"] == ""
    assert credit["note"] == ""
    assert miles["amount"] == "6000.00"
    assert miles["unit"] == "miles"
    assert miles["cash_value"] == "60.00"
    assert miles["approval_id"] == "3"
    # A reversal's numbers are written as numbers: negative, never quoted as text.
    assert reversal["amount"] == "-12.50"
    assert reversal["cash_value"] == "-12.50"
    assert reversal["reverses_id"] == str(ids["credit"])
    assert reversal["note"] == "granted twice by mistake"


def test_the_export_applies_the_filter(db: Database) -> None:
    ids = build_ledger(db)
    table = exported(db, LedgerFilter(kind="credit", since=T0 + HOUR))
    assert [row[0] for row in table[1:]] == [str(ids["reversal"])]
    assert exported(db, LedgerFilter(kind="upgrade")) == [list(CSV_COLUMNS)]


@pytest.mark.parametrize(
    "hostile",
    ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\t=1", "\r=1"],
)
def test_text_that_begins_like_a_formula_is_exported_as_text(db: Database, hostile: str) -> None:
    with db.unit_of_work() as uow:
        write(uow, "k", customer_id=hostile, note=hostile, slot=hostile, policy=hostile, granted_by=hostile)
        write(uow, "r", amount=Decimal("-12.50"), cash_value=Decimal("-12.50"), reverses_id=1, at=T0 + HOUR)
        uow.commit()
    header, hostile_row, reversal = exported(db)
    record = dict(zip(header, hostile_row, strict=True))
    for column in ("slot", "customer_id", "policy", "granted_by", "note"):
        assert record[column] == "'" + hostile, column
    assert dict(zip(header, reversal, strict=True))["amount"] == "-12.50"


def test_plain_text_is_exported_as_it_is(db: Database) -> None:
    with db.unit_of_work() as uow:
        write(uow, "k", customer_id="C-=1", note='a "quoted", comma\nand a new line')
        uow.commit()
    record = dict(zip(*exported(db), strict=True))
    assert record["customer_id"] == "C-=1"
    assert record["note"] == 'a "quoted", comma\nand a new line'


def test_a_long_export_comes_in_batches_and_holds_every_entry(db: Database) -> None:
    with db.unit_of_work() as uow:
        uow.execute(
            sa.insert(tables.ledger),
            [
                {
                    "entry_key": f"k{n}",
                    "case_id": n,
                    "slot": "case",
                    "customer_id": f"C-{n}",
                    "kind": "credit",
                    "amount": Decimal(n) / 100,
                    "unit": "EUR",
                    "cash_value": Decimal(n) / 100,
                    "policy": "p",
                    "granted_by": "ann",
                    "at": T0 + timedelta(seconds=n),
                }
                for n in range(2500)
            ],
        )
        uow.commit()
    with db.unit_of_work() as uow:
        chunks = list(export_csv(uow, LedgerFilter()))
    assert len(chunks) == 4  # the header, then batches of 1000, 1000 and 500
    rows = list(csv.reader(io.StringIO("".join(chunks))))[1:]
    assert len(rows) == 2500
    assert [row[2] for row in rows] == [str(n) for n in range(2500)]
    assert rows[1234][7] == "12.34"


def test_an_export_stopped_early_leaves_the_unit_of_work_usable(db: Database) -> None:
    build_ledger(db)
    with db.unit_of_work() as uow:
        chunks = export_csv(uow, LedgerFilter())
        assert next(chunks).startswith("id,at,case_id,")
        assert "12.50" in next(chunks)
        assert isinstance(chunks, Generator)
        chunks.close()
        rows, _cursor = list_ledger(uow, LedgerFilter())
    assert len(rows) == 4


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("C-1", "C-1"),
        (" =1", " =1"),
        ("", ""),
        (None, ""),
    ],
)
def test_safe_cell_quotes_only_what_could_start_a_formula(value: object, cell: str) -> None:
    assert safe_cell(value) == cell
