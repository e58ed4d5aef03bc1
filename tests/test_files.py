"""Event files: JSONL, CSV and Parquet, with column mappings; bad rows reported by line, good rows kept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
import pytest
import sqlalchemy as sa

from amends.errors import InvalidInput, Unavailable
from amends.events import ColumnMapping, FileFormat, FileProgress, get_customer, ingest_file
from amends.store import Database, tables
from tests.conftest import NOW, an_event, count_rows


def stored(db: Database) -> list[sa.Row[tuple[object, ...]]]:
    with db.engine.connect() as connection:
        return list(connection.execute(sa.select(tables.events).order_by(tables.events.c.seq)).all())


def write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_a_jsonl_file_of_envelopes_is_stored(db: Database, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [orjson.dumps(an_event(n)) for n in range(1, 26)])
    progress: list[FileProgress] = []
    report = ingest_file(db, path, received_at=NOW, commit_rows=10, on_progress=progress.append)
    assert (report.accepted, report.duplicates, report.rejected) == (25, 0, 0)
    assert [p.accepted for p in progress] == [10, 20, 25]
    assert progress[-1].done == progress[-1].total == path.stat().st_size


def test_bad_jsonl_lines_are_reported_by_line_and_the_rest_stored(db: Database, tmp_path: Path) -> None:
    lines = [orjson.dumps(an_event(1)), b"{not json", b"", orjson.dumps(an_event(2, time="2026-05-01 10:00")), b"[1]"]
    report = ingest_file(db, write_jsonl(tmp_path / "e.jsonl", lines), received_at=NOW)
    assert report.accepted == 1
    assert [(r.line, r.field) for r in report.rejections] == [(2, "line"), (4, "time"), (5, "line")]


def test_a_csv_is_mapped_to_envelopes_and_its_other_columns_become_data(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer_id,created_at,total,zip,note\n"
        "O-1,C-1,2026-05-01T10:00:00Z,42.50,02134,first\n"
        "O-2,C-2,2026-05-01T11:00:00+02:00,7,90210,\n"
    )
    mapping = ColumnMapping.parse(
        ["subject=customer_id", "time=created_at", "id=order_id"],
        constants={"type": "order.placed", "source": "shop"},
    )
    report = ingest_file(db, path, received_at=NOW, mapping=mapping)
    assert (report.accepted, report.rejected) == (2, 0)
    first, second = stored(db)
    assert (first.event_id, first.subject, first.type, first.source) == ("O-1", "C-1", "order.placed", "shop")
    # Numbers become numbers only where nothing is lost: the zip code keeps its leading zero.
    assert first.data == {"total": 42.5, "zip": "02134", "note": "first"}
    assert second.data == {"total": 7, "zip": 90210}
    assert second.time == datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def test_a_csv_row_with_a_bad_timestamp_is_reported_with_its_line(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "id,subject,time,note\n"
        "a,C-1,2026-05-01T10:00:00Z,fine\n"
        'b,C-1,not a time,"a note\nover two lines"\n'
        "c,C-1,2026-05-01T10:00:00,naive\n"
        "d,C-1,2026-05-02T10:00:00Z,fine\n"
    )
    mapping = ColumnMapping.parse([], constants={"type": "order.placed", "source": "shop"})
    report = ingest_file(db, path, received_at=NOW, mapping=mapping)
    assert report.accepted == 2
    assert [(r.line, r.field) for r in report.rejections] == [(3, "time"), (5, "time")]
    assert count_rows(db, "events") == 2


def test_a_csv_row_with_the_wrong_number_of_cells_is_reported(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("id,subject,time\na,C-1,2026-05-01T10:00:00Z,extra\n")
    report = ingest_file(
        db, path, received_at=NOW, mapping=ColumnMapping.parse([], constants={"type": "t", "source": "s"})
    )
    assert report.rejections[0].line == 2
    assert "4 cells" in report.rejections[0].reason


def test_a_timezone_can_be_given_to_naive_times(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("id,subject,time\na,C-1,2026-07-01 10:00:00\n")
    mapping = ColumnMapping.parse([], constants={"type": "t", "source": "s"}, timezone="America/Sao_Paulo")
    assert ingest_file(db, path, received_at=NOW, mapping=mapping).accepted == 1
    assert stored(db)[0].time == datetime(2026, 7, 1, 13, 0, tzinfo=UTC)


def test_rows_without_an_id_are_stored_once_however_often_the_file_is_loaded(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("customer,at\nC-1,2026-05-01T10:00:00Z\nC-2,2026-05-01T10:00:00Z\n")
    mapping = ColumnMapping.parse(
        ["subject=customer", "time=at"], constants={"type": "support.contact", "source": "crm"}
    )
    first = ingest_file(db, path, received_at=NOW, mapping=mapping)
    again = ingest_file(db, path, received_at=NOW, mapping=mapping)
    assert (first.accepted, again.accepted, again.duplicates) == (2, 0, 2)
    assert all(row.event_id.startswith("sha256:") for row in stored(db))


def test_a_parquet_file_is_stored_with_typed_values(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "flights.parquet"
    pl.DataFrame(
        {
            "booking": ["B1", "B2", "B3"],
            "passenger": ["C-1", "C-2", None],
            "arrived_at": [
                datetime(2026, 5, 1, 10, tzinfo=UTC),
                datetime(2026, 5, 1, 11, tzinfo=UTC),
                datetime(2026, 5, 1, 12, tzinfo=UTC),
            ],
            "delay_minutes": [420, 5, 0],
        }
    ).write_parquet(path)
    mapping = ColumnMapping.parse(
        ["id=booking", "subject=passenger", "time=arrived_at"],
        constants={"type": "flight.arrived", "source": "ops"},
    )
    report = ingest_file(db, path, received_at=NOW, mapping=mapping)
    assert (report.accepted, report.rejected) == (2, 1)
    assert (report.rejections[0].line, report.rejections[0].field) == (3, "subject")
    assert stored(db)[0].data == {"delay_minutes": 420}
    with db.unit_of_work() as uow:
        assert get_customer(uow, "C-1").event_count == 1


def test_a_mapping_to_an_unknown_attribute_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        ColumnMapping.parse(["customer=customer_id"])
    assert caught.value.field == "--map"
    with pytest.raises(InvalidInput, match="ATTRIBUTE=COLUMN"):
        ColumnMapping.parse(["subject"])
    with pytest.raises(InvalidInput, match="unknown time zone"):
        ColumnMapping.parse([], timezone="Mars/Olympus")


def test_the_format_comes_from_the_file_name() -> None:
    assert FileFormat.of(Path("a.NDJSON")) is FileFormat.JSONL
    assert FileFormat.of(Path("a.parquet")) is FileFormat.PARQUET
    with pytest.raises(InvalidInput):
        FileFormat.of(Path("a.xlsx"))


def test_a_database_failure_while_storing_stops_the_ingest_with_that_error(tmp_path: Path) -> None:
    # Groups are stored on a second thread; its failure must reach the caller, not be lost or hang it.
    db = Database(f"sqlite:///{tmp_path / 'never-initialised.db'}")
    path = write_jsonl(tmp_path / "events.jsonl", [orjson.dumps(an_event(n)) for n in range(1, 101)])
    seen: list[FileProgress] = []
    try:
        with pytest.raises(Unavailable, match="no such table"):
            ingest_file(db, path, received_at=NOW, commit_rows=10, on_progress=seen.append)
    finally:
        db.dispose()
    assert seen == []  # nothing was reported as stored
