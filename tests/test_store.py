"""The store: migrations on both engines, the unit of work, and the event ledger's idempotence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from amends.errors import Unavailable
from amends.events import Event, append_events, get_customer, validate_event
from amends.store import Database, head_revision, pending_revisions, tables, upgrade
from tests.conftest import NOW, an_event, count_rows, unreachable_url


def events(*numbers: int, **changes: object) -> list[Event]:
    out = [validate_event(an_event(n, **changes)) for n in numbers]
    assert all(isinstance(e, Event) for e in out)
    return out  # type: ignore[return-value]


def test_init_creates_the_schema_from_nothing_and_is_safe_to_repeat(fresh_database_url: str) -> None:
    db = Database(fresh_database_url)
    try:
        upgrade(db)
        assert pending_revisions(db) == []
        upgrade(db)
        with db.engine.connect() as connection:
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            assert version == head_revision()
            # The migrations build exactly the tables the code declares.
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, tables.metadata) == []
    finally:
        db.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_an_event_is_stored_once_per_source_and_id(db: Database) -> None:
    with db.unit_of_work() as uow:
        first = append_events(uow, events(1, 2, 3), received_at=NOW)
        uow.commit()
    with db.unit_of_work() as uow:
        again = append_events(uow, events(2, 3, 4), received_at=NOW)
        uow.commit()
    assert (first.accepted, first.duplicates) == (3, 0)
    assert (again.accepted, again.duplicates) == (1, 2)
    assert count_rows(db, "events") == 4


def test_the_same_id_from_another_source_is_another_event(db: Database) -> None:
    with db.unit_of_work() as uow:
        result = append_events(uow, events(1) + events(1, source="https://crm.example.com"), received_at=NOW)
        uow.commit()
    assert result.accepted == 2


def test_a_repeat_inside_one_batch_is_a_duplicate(db: Database) -> None:
    with db.unit_of_work() as uow:
        result = append_events(uow, events(1, 1, 1), received_at=NOW)
        uow.commit()
    assert (result.accepted, result.duplicates) == (1, 2)


def test_a_customer_is_created_on_first_sight_of_their_subject(db: Database) -> None:
    with db.unit_of_work() as uow:
        append_events(uow, events(1, 8, 15), received_at=NOW)  # all three are C-1
        uow.commit()
    with db.unit_of_work() as uow:
        customer = get_customer(uow, "C-1")
    assert customer.event_count == 3
    assert customer.created_at == NOW
    assert customer.first_event_at == datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    assert count_rows(db, "customers") == 1


def test_times_come_back_aware_and_in_utc(db: Database) -> None:
    late = NOW + timedelta(microseconds=7)
    with db.unit_of_work() as uow:
        append_events(uow, events(1, time="2026-05-01T23:30:00.000250-05:00"), received_at=late)
        uow.commit()
    with db.engine.connect() as connection:
        row = connection.execute(sa.select(tables.events)).one()
    assert row.time == datetime(2026, 5, 2, 4, 30, 0, 250, tzinfo=UTC)
    assert row.received_at == late


def test_work_not_committed_is_rolled_back(db: Database) -> None:
    with db.unit_of_work() as uow:
        append_events(uow, events(1), received_at=NOW)
    assert count_rows(db, "events") == 0
    assert count_rows(db, "customers") == 0


def test_an_unreachable_database_is_unavailable(engine: str, tmp_path: Path) -> None:
    db = Database(unreachable_url(engine, tmp_path))
    with pytest.raises(Unavailable, match="database unavailable"), db.unit_of_work():
        pass
    with pytest.raises(Unavailable):
        db.ping()
