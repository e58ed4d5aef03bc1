"""The store: migrations on both engines, the unit of work, and the event ledger's idempotence."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from amends.errors import Unavailable
from amends.events import Event, append_events, get_customer, validate_event
from amends.events.ledger import dedup_key
from amends.store import Database, head_revision, pending_revisions, tables, upgrade
from amends.store.migrate import alembic_config
from amends.store.types import JSONDocument, UTCDateTime
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


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_the_configured_cache(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db", sqlite_cache_mib=48)
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -48 * 1024
        # The process's ceiling: every connection's cache together (SQLite gives pages back as it nears it).
        assert connection.exec_driver_sql("PRAGMA soft_heap_limit").scalar() == 48 * 2**20
    db.dispose()


def test_migration_0002_keys_the_events_stored_before_it(fresh_database_url: str) -> None:
    # A ledger written under revision 0001 keeps its rows, and they stay unique per (source, id).
    db = Database(fresh_database_url)
    try:
        db.create_sqlite_directory()
        command.upgrade(alembic_config(db), "0001")
        customers = sa.table("customers", sa.column("id"), sa.column("created_at", UTCDateTime()))
        old = sa.table(
            "events",
            *(sa.column(name) for name in ("source", "event_id", "type", "subject")),
            *(sa.column(name, UTCDateTime()) for name in ("time", "received_at")),
            sa.column("data", JSONDocument),
        )
        pairs = (("shop", "evt-1"), ("shop", "evt-2"), ("crm", "evt-1"))
        row = {"type": "order.placed", "time": NOW, "subject": "C-1", "data": {}, "received_at": NOW}
        with db.engine.begin() as connection:
            connection.execute(sa.insert(customers), [{"id": "C-1", "created_at": NOW}])
            connection.execute(sa.insert(old), [{"source": s, "event_id": e, **row} for s, e in pairs])
        upgrade(db)
        with db.engine.connect() as connection:
            stored = connection.execute(sa.text("SELECT source, event_id, dedup_key FROM events")).all()
        assert {row.dedup_key for row in stored} == {dedup_key(row.source, row.event_id) for row in stored}
        assert len(stored) == 3
        with db.unit_of_work() as uow:
            again = append_events(uow, events(1, source="shop") + events(3, source="shop"), received_at=NOW)
            uow.commit()
        assert (again.accepted, again.duplicates) == (1, 1)
    finally:
        db.dispose()


def test_migration_0021_gives_the_staff_keys_in_use_a_lifetime_and_no_other_key(fresh_database_url: str) -> None:
    # Staff keys made before keys could expire get 90 days from the upgrade; integration and revoked keys, none.
    db = Database(fresh_database_url)
    try:
        db.create_sqlite_directory()
        command.upgrade(alembic_config(db), "0020")
        keys = sa.table(
            "api_keys",
            *(sa.column(name) for name in ("id", "name", "key_hash", "staff_id")),
            sa.column("scopes", JSONDocument),
            *(sa.column(name, UTCDateTime()) for name in ("created_at", "revoked_at")),
        )
        row = {"key_hash": "0" * 64, "created_at": NOW}
        with db.engine.begin() as connection:
            connection.execute(sa.insert(keys), [
                {"id": "a", "name": "staff ana", "staff_id": "ana", "scopes": [], "revoked_at": None, **row},
                {"id": "b", "name": "staff bob", "staff_id": "bob", "scopes": [], "revoked_at": NOW, **row},
                {"id": "c", "name": "crm", "staff_id": None, "scopes": ["events:write"], "revoked_at": None, **row},
            ])  # fmt: skip
        before = datetime.now(UTC)
        upgrade(db)
        with db.unit_of_work() as uow:
            expiry = dict(uow.execute(sa.select(tables.api_keys.c.id, tables.api_keys.c.expires_at)).all())
        assert expiry["b"] is None
        assert expiry["c"] is None
        assert before + timedelta(days=90) <= expiry["a"] <= datetime.now(UTC) + timedelta(days=90)
    finally:
        db.dispose()


def test_the_dedup_key_tells_every_pair_apart() -> None:
    # The pair is encoded unambiguously: moving characters between source and id changes the key.
    assert dedup_key("ab", "c") != dedup_key("a", "bc")
    assert dedup_key("a\x00b", "c") != dedup_key("a", "b\x00c")
    assert len(dedup_key("shop", "1")) == 22


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


def test_writers_in_one_process_take_turns_instead_of_failing_on_sqlites_lock(tmp_path: Path) -> None:
    # With no busy timeout at all, SQLite refuses a second writer at once; units that write wait for
    # each other on the process's own lock instead, so none of them fails.
    db = Database(f"sqlite:///{tmp_path / 'turns.db'}", busy_timeout_seconds=0)
    upgrade(db)
    failures: list[BaseException] = []

    def write(start: int) -> None:
        try:
            for n in range(start, start + 200, 20):
                with db.unit_of_work(writes=True) as uow:
                    append_events(uow, events(*range(n, n + 20)), received_at=NOW)
                    uow.commit()
        except BaseException as exc:  # collected for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(1000 * t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.dispose()
    assert failures == []
    assert count_rows(Database(f"sqlite:///{tmp_path / 'turns.db'}"), "events") == 6 * 200
