"""Backups: the embedded database copied while events keep arriving, checked, and restored (over a database that
moved on, and from an older schema); copies that are not whole refused; and PostgreSQL's documented pg_dump and
pg_restore, run for real, giving back the same rows and an intact audit chain."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command

from amends.errors import InvalidInput
from amends.events import Event, validate_event
from amends.events.ledger import append_events
from amends.recover.actors import SYSTEM
from amends.recover.audit import audit, check_chain
from amends.store import Database, head_revision, tables, upgrade
from amends.store.backup import backup_sqlite
from amends.store.migrate import alembic_config
from tests.conftest import NOW, an_event, service_missing


def _cli(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"AMENDS_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "amends.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def _add(db: Database, first: int, count: int) -> None:
    with db.unit_of_work(writes=True) as uow:
        batch = [validate_event(an_event(n, subject=f"c-{n % 50}")) for n in range(first, first + count)]
        append_events(uow, [e for e in batch if isinstance(e, Event)], received_at=NOW)
        audit(uow, SYSTEM, "events.loaded", f"batch:{first}", at=NOW, count=count)
        uow.commit()


def _count(db: Database, table: sa.Table) -> int:
    with db.unit_of_work() as uow:
        return int(uow.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_a_backup_taken_while_events_arrive_is_whole_and_restores(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    assert _cli("init", url=url, cwd=tmp_path).returncode == 0
    db = Database(url)
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_writing() -> None:
        first = 1_000_000
        try:
            while not stop.is_set():
                _add(db, first, 200)
                first += 200
        except BaseException as exc:
            errors.append(exc)

    try:
        _add(db, 0, 20_000)
        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            done = _cli("backup", str(tmp_path / "copy.db"), url=url, cwd=tmp_path)
        finally:
            stop.set()
            writer.join()
        assert errors == []
        assert done.returncode == 0, done.stderr
        assert "checked whole" in done.stderr
        after = _count(db, tables.events)

        # The copy is a consistent moment: every batch of the writer is in it whole or not at all.
        copy = Database(f"sqlite:///{tmp_path / 'copy.db'}")
        try:
            copied = _count(copy, tables.events)
            with copy.unit_of_work() as uow:
                assert check_chain(uow).intact
                loaded = uow.execute(sa.select(sa.func.sum(tables.audit_log.c.details["count"].as_integer()))).scalar()
        finally:
            copy.dispose()
        assert 20_000 <= copied <= after
        assert loaded == copied
        assert not list(tmp_path.glob(".copy.db.partial"))

        # Restore over the live database, which has moved on since.
        _add(db, 5_000_000, 100)
        db.dispose()
        restored = _cli("restore", str(tmp_path / "copy.db"), "--yes", url=url, cwd=tmp_path)
        assert restored.returncode == 0, restored.stderr
        assert _count(db, tables.events) == copied
        with db.unit_of_work() as uow:
            assert check_chain(uow).intact
    finally:
        db.dispose()


def test_a_backup_of_a_large_database_finishes_while_writers_keep_committing(tmp_path: Path) -> None:
    """The copy is taken in one step of the backup API, which reads one snapshot while writers go on (a copy in
    several steps restarts whenever another connection commits between them; with a large database and a busy
    writer it did not finish). 64 MiB here, with a commit every few milliseconds throughout."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    assert _cli("init", url=url, cwd=tmp_path).returncode == 0
    db = Database(url)
    with db.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE filler (n INTEGER PRIMARY KEY, b BLOB)"))
        connection.execute(sa.text("WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 1024) "
                                   "INSERT INTO filler (b) SELECT randomblob(65536) FROM k"))  # fmt: skip
    stop, commits = threading.Event(), [0]

    def keep_committing() -> None:
        while not stop.is_set():
            with db.engine.begin() as connection:
                connection.execute(sa.text("INSERT INTO filler (b) VALUES (randomblob(100))"))
            commits[0] += 1
            stop.wait(0.003)

    writer = threading.Thread(target=keep_committing)
    writer.start()
    try:
        done = _cli("backup", str(tmp_path / "copy.db"), url=url, cwd=tmp_path)
        during = commits[0]
    finally:
        stop.set()
        writer.join()
        db.dispose()
    assert done.returncode == 0, done.stderr
    assert during > 10  # the writer kept committing while the copy was taken
    copy = sqlite3.connect(tmp_path / "copy.db")
    try:
        assert copy.execute("SELECT count(*) FROM filler").fetchone()[0] >= 1024
    finally:
        copy.close()


def test_copies_of_personal_data_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    assert _cli("init", url=url, cwd=tmp_path).returncode == 0
    db = Database(url)
    try:
        _add(db, 0, 100)
    finally:
        db.dispose()
    exported = tmp_path / "customer.json"
    exported.write_text("older, readable by all")
    exported.chmod(0o644)
    before = os.umask(0o022)  # the usual default, which leaves a new file readable by everyone (the CLI inherits it)
    try:
        assert _cli("backup", str(tmp_path / "copy.db"), url=url, cwd=tmp_path).returncode == 0
        assert _cli("customers", "export", "c-7", "--out", str(exported), url=url, cwd=tmp_path).returncode == 0
        assert _cli("audit", "export", "--out", str(tmp_path / "audit.jsonl"), url=url, cwd=tmp_path).returncode == 0
    finally:
        os.umask(before)
    for path in (tmp_path / "copy.db", exported, tmp_path / "audit.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert b'"c-7"' in exported.read_bytes()


def test_a_backup_of_an_older_schema_is_restored_and_brought_up_to_date(tmp_path: Path) -> None:
    old = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        command.upgrade(alembic_config(old), "0016")
        with old.engine.begin() as connection:
            connection.execute(sa.insert(tables.customers).values(id="c-1", created_at=NOW))
    finally:
        old.dispose()
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert _cli("init", url=url, cwd=tmp_path).returncode == 0
    done = _cli("restore", str(tmp_path / "old.db"), "--yes", url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"schema 0016, now {head_revision()}" in done.stderr
    new = Database(url)
    try:
        assert _count(new, tables.customers) == 1
        with new.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    finally:
        new.dispose()


def test_a_restore_waits_for_no_one_it_refuses_while_a_worker_runs_on_the_database(tmp_path: Path) -> None:
    """A running worker (or server) holds the old content in memory: restoring under it would be undone or mixed.
    The restore refuses, names the reason and changes nothing; once the worker has stopped, it goes ahead."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    assert _cli("init", url=url, cwd=tmp_path).returncode == 0
    db = Database(url)
    try:
        _add(db, 0, 10)
        assert _cli("backup", str(tmp_path / "copy.db"), url=url, cwd=tmp_path).returncode == 0
        _add(db, 10, 5)
        env = {"AMENDS_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
        worker = subprocess.Popen([sys.executable, "-m", "amends.cli", "worker"], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        try:
            assert worker.stdout is not None
            started = worker.stdout.readline()  # it says so once it runs
            assert "amends worker" in started, started
            refused = _cli("restore", str(tmp_path / "copy.db"), "--yes", url=url, cwd=tmp_path)
            assert refused.returncode == 1
            assert "a server or worker is running" in refused.stderr
            assert _count(db, tables.events) == 15  # untouched
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=60)  # and its output pipe closed
        done = _cli("restore", str(tmp_path / "copy.db"), "--yes", url=url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert _count(db, tables.events) == 10
    finally:
        db.dispose()


def test_what_is_not_a_whole_backup_is_refused_and_nothing_is_touched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    assert _cli("init", url=url, cwd=tmp_path).returncode == 0
    db = Database(url)
    try:
        _add(db, 0, 5_000)
    finally:
        db.dispose()
    assert _cli("backup", str(tmp_path / "copy.db"), url=url, cwd=tmp_path).returncode == 0
    again = _cli("backup", str(tmp_path / "copy.db"), url=url, cwd=tmp_path)
    assert again.returncode == 2
    assert "exists already" in again.stderr

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes((tmp_path / "copy.db").read_bytes()[:50_000])
    for bad, reason in ((garbage, "is not an amends database"), (truncated, "is damaged|is not an amends database"),
                        (tmp_path / "missing.db", "no such file")):  # fmt: skip
        refused = _cli("restore", str(bad), "--yes", url=url, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert any(part in refused.stderr for part in reason.split("|")), refused.stderr
    db = Database(url)
    try:
        assert _count(db, tables.events) == 5_000
    finally:
        db.dispose()

    on_postgres = _cli("backup", str(tmp_path / "pg.db"), url="postgresql://amends@localhost/x", cwd=tmp_path)
    assert on_postgres.returncode == 2
    assert "pg_dump" in on_postgres.stderr


def test_postgres_the_documented_pg_dump_and_pg_restore_give_everything_back(pg: Database, tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        service_missing("pg_dump and pg_restore", "not on PATH (Debian: postgresql-client)")
    _add(pg, 0, 3_000)
    source = pg.url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = tmp_path / "amends.dump"
    # docs/operations.md#backups, word for word but for the names.
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", source], check=True, timeout=300)
    target_name = "amends_restore_check"
    with psycopg.connect(source, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {target_name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {target_name}")
    target = pg.url.set(drivername="postgresql", database=target_name).render_as_string(hide_password=False)
    try:
        subprocess.run(["pg_restore", "--no-owner", f"--dbname={target}", str(dump)], check=True, timeout=300)
        restored = Database(pg.url.set(database=target_name).render_as_string(hide_password=False))
        try:
            assert _count(restored, tables.events) == _count(pg, tables.events) == 3_000
            with restored.unit_of_work() as uow:
                check = check_chain(uow)
            assert check.intact
            assert check.entries == 1
            # The append-only triggers came back too.
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), restored.engine.begin() as connection:
                connection.execute(sa.delete(tables.audit_log))
        finally:
            restored.dispose()
    finally:
        with psycopg.connect(source, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {target_name} WITH (FORCE)")


def test_a_backup_onto_a_file_system_without_hard_links_is_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAT (a USB stick) and some network shares refuse hard links; the checked copy is renamed instead."""
    db = Database(f"sqlite:///{tmp_path / 'live.db'}")
    try:
        upgrade(db)
        _add(db, 0, 50)

        def no_links(_source: object, _target: object) -> None:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_links)
        info = backup_sqlite(db, tmp_path / "copy.db")
        assert info.events == 50
        assert (tmp_path / "copy.db").is_file()
        assert not list(tmp_path.glob(".copy.db.partial"))
        with pytest.raises(InvalidInput, match="exists already"):
            backup_sqlite(db, tmp_path / "copy.db")
    finally:
        db.dispose()
