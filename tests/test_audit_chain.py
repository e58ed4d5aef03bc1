"""The audit log as a hash chain, on both engines: every entry sealed in one order however many writers there are;
an entry changed, removed, slipped in or cut from the end behind the database's back is found; entries written
before the chain are sealed by the migration; and the export can be checked without amends, by the recipe in
docs/security.md."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from alembic import command

from amends.recover.actors import SYSTEM, Actor
from amends.recover.audit import GENESIS, audit, check_chain, list_audit
from amends.store import Database, tables, upgrade
from amends.store.migrate import alembic_config

AT = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def _write(db: Database, count: int, *, start: int = 0) -> None:
    with db.unit_of_work(writes=True) as uow:
        for n in range(start, start + count):
            audit(uow, Actor(None, None, origin="192.0.2.7"), "case.note", f"case:{n}", at=AT + timedelta(seconds=n),
                  text=f"entry {n} — café", amount=n * 1.5, nested={"b": [1, None, "x"], "a": True})  # fmt: skip
        uow.commit()


def _tamper(db: Database, statement: str) -> None:
    """Change the log behind amends' back, as someone with the database's keys could."""
    with db.engine.begin() as connection:
        if db.is_sqlite:  # a database file of the test's own
            connection.execute(sa.text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            connection.execute(sa.text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
            connection.execute(sa.text(statement))
            return
        connection.execute(sa.text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        connection.execute(sa.text(statement))
        connection.execute(sa.text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


def test_entries_are_chained_and_a_rolled_back_decision_leaves_none(db: Database) -> None:
    _write(db, 5)
    with db.unit_of_work(writes=True) as uow:
        audit(uow, SYSTEM, "case.note", "case:99", at=AT)  # never committed
    with db.unit_of_work() as uow:
        check = check_chain(uow)
        entries = list_audit(uow)
    assert check.intact
    assert check.entries == 5
    assert entries[0].hash == check.head
    assert all(e.hash and len(e.hash) == 64 for e in entries)
    assert len({e.hash for e in entries}) == 5
    assert entries[0].details["nested"] == {"b": [1, None, "x"], "a": True}


def test_numbers_each_engine_writes_its_own_way_still_verify(db: Database) -> None:
    """PostgreSQL keeps JSON numbers as numeric: 1e16 comes back as 10000000000000000, -0.0 as 0. What is hashed is
    what either engine gives back."""
    with db.unit_of_work(writes=True) as uow:
        audit(uow, SYSTEM, "case.note", "case:1", at=AT, big=1e16, negative_zero=-0.0, whole=2.0, small=1.5e-7,
              nested={"amounts": [1e19, 1e20, 0.25]})  # fmt: skip
        uow.commit()
    with db.unit_of_work() as uow:
        assert check_chain(uow).intact
        details = list_audit(uow)[0].details
    assert details["big"] == 10**16
    assert details["nested"]["amounts"] == [10**19, 1e20, 0.25]
    assert details["small"] == 1.5e-7


@pytest.mark.parametrize(
    ("change", "broken"),
    [
        ("UPDATE audit_log SET target = 'case:999' WHERE id = {third}", "third"),
        ("UPDATE audit_log SET actor = 'staff:mallory', hash = hash WHERE id = {third}", "third"),
        ("DELETE FROM audit_log WHERE id = {third}", "fourth"),
        ("UPDATE audit_log SET hash = '" + "0" * 64 + "' WHERE id = {third}", "third"),
    ],
)
def test_an_entry_changed_or_removed_behind_the_databases_back_breaks_the_chain_there(
    db: Database, change: str, broken: str
) -> None:
    _write(db, 6)
    with db.unit_of_work() as uow:
        ids = [e.id for e in reversed(list_audit(uow))]
    place = {"third": ids[2], "fourth": ids[3]}
    _tamper(db, change.format(**place))
    with db.unit_of_work() as uow:
        check = check_chain(uow)
    assert not check.intact
    assert check.broken_at == place[broken]
    assert check.entries == 2


def test_an_entry_slipped_in_or_the_end_cut_off_is_found(db: Database) -> None:
    _write(db, 4)
    with db.unit_of_work() as uow:
        kept = check_chain(uow).head
        newest = list_audit(uow, limit=1)[0]
    # Slipped in after the last, with a hash made up by whoever did it.
    forged = f"'{newest.at.isoformat()}', 'system', 'ledger.granted', 'case:1', NULL, '{{}}', '{'f' * 64}'"
    _tamper(db, f"INSERT INTO audit_log (at, actor, action, target, origin, details, hash) VALUES ({forged})")
    with db.unit_of_work() as uow:
        assert check_chain(uow).broken_at == newest.id + 1
    # Cut short: the newest entries removed; only the hash kept elsewhere tells.
    _tamper(db, f"DELETE FROM audit_log WHERE id >= {newest.id}")
    with db.unit_of_work() as uow:
        assert check_chain(uow).intact
        cut = check_chain(uow, head=kept)
    assert not cut.intact
    assert cut.broken_at is None
    assert kept in str(cut.reason)


def test_writers_at_once_make_one_chain(db: Database) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for round_ in range(5):
                _write(db, 3, start=n * 100 + round_ * 10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.unit_of_work() as uow:
        check = check_chain(uow)
    assert check.intact
    assert check.entries == 6 * 5 * 3


def test_the_migration_seals_the_entries_written_before_the_chain(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        command.upgrade(alembic_config(db), "0016")
        with db.engine.begin() as connection:
            for n in range(3):  # the table as it was: no hash column
                connection.execute(
                    sa.insert(tables.audit_log).values(
                        at=AT + timedelta(minutes=n),
                        actor="system",
                        action="case.opened",
                        target=f"case:{n}",
                        origin=None,
                        details={"n": n, "word": "é"},
                    )
                )
        upgrade(db)
        _write(db, 2, start=10)
        with db.unit_of_work() as uow:
            check = check_chain(uow)
        assert check.intact
        assert check.entries == 5
    finally:
        db.dispose()


def _recipe(lines: list[bytes]) -> bool:
    """docs/security.md's recipe, in plain Python: each line's hash is SHA-256 of the one before, a newline, and
    the line's content without id and hash as JSON with sorted keys and no spaces."""
    previous = "0" * 64
    for line in lines:
        entry = orjson.loads(line)
        content = {k: v for k, v in entry.items() if k not in ("id", "hash")}
        digest = hashlib.sha256(previous.encode() + b"\n" + orjson.dumps(content, option=orjson.OPT_SORT_KEYS))
        if digest.hexdigest() != entry["hash"]:
            return False
        previous = entry["hash"]
    return True


def test_verify_and_export_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'amends.db'}"
    env = {"AMENDS_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "amends.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip

    assert cli("init").returncode == 0
    db = Database(url)
    try:
        _write(db, 4)
        verified = cli("audit", "verify")
        assert verified.returncode == 0, verified.stderr
        head = verified.stdout.strip()
        assert "4 entries" in verified.stderr
        assert len(head) == 64
        exported = cli("audit", "export", "--out", str(tmp_path / "audit.jsonl"))
        assert exported.returncode == 0, exported.stderr
        lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
        assert len(lines) == 4
        assert orjson.loads(lines[-1])["hash"] == head
        assert _recipe(lines)
        assert not _recipe([lines[0].replace(b"case:0", b"case:7"), *lines[1:]])
        assert cli("audit", "export", "--since", "yesterday").returncode == 2
        later = cli("audit", "export", "--since", (AT + timedelta(seconds=2)).isoformat()).stdout.splitlines()
        assert [orjson.loads(x)["target"] for x in later] == ["case:2", "case:3"]

        _tamper(db, "UPDATE audit_log SET details = '{}' WHERE target = 'case:1'")
        broken = cli("audit", "verify", "--head", head)
        assert broken.returncode == 1
        assert "broken at entry 2" in broken.stderr
    finally:
        db.dispose()
    assert GENESIS == "0" * 64
