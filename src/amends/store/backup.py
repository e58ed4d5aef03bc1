"""Backups of the embedded database, with SQLite's online backup API: a consistent copy taken while the server
and workers keep writing, checked before it is called a backup, and restored the same way. PostgreSQL is backed up
with its own tools, pg_dump and pg_restore (docs/operations.md#backups).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from amends.errors import Conflict, InvalidInput
from amends.store.database import Database
from amends.store.migrate import known_revisions

__all__ = ["BackupInfo", "backup_sqlite", "check_backup", "restore_sqlite", "running_on"]

_PRIVATE = 0o600  # a backup holds customers' personal data: readable by its owner only


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A checked copy: where, how large, the schema revision it is at, and its events and cases."""

    path: Path
    bytes: int
    revision: str
    events: int
    cases: int


def _sqlite_path(db: Database) -> Path:
    if not db.is_sqlite or db.url.database in (None, "", ":memory:"):
        raise InvalidInput(
            "database_url",
            "amends backup and restore are for the embedded SQLite database; back PostgreSQL up with pg_dump "
            "(docs/operations.md#backups)",
        )
    return Path(str(db.url.database))


@contextmanager
def _holding_in_use(database: str, operation: int) -> Iterator[None]:
    """A lock on the file `<database>.in-use` (`flock`: shared or exclusive, perhaps not waiting), held until the
    block ends or the process does, however it ends."""
    handle = os.open(f"{database}.in-use", os.O_RDWR | os.O_CREAT, _PRIVATE)
    try:
        fcntl.flock(handle, operation)
        yield
    finally:
        os.close(handle)  # and with it the lock


@contextmanager
def running_on(database_url: str) -> Iterator[None]:
    """Held by `amends serve` and `amends worker` while they run on an embedded database (a shared lock on the file
    `<database>.in-use`, which the system releases when the process ends, however it ends): `restore_sqlite`
    refuses while any process holds it, and a server started during a restore waits for it to finish. Nothing for
    PostgreSQL, or a database in memory."""
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        yield
        return
    Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    with _holding_in_use(str(url.database), fcntl.LOCK_SH):
        yield


def check_backup(path: Path) -> BackupInfo:
    """Open a copy read-only and check it whole: SQLite's integrity check, and a schema revision this version of
    amends knows. InvalidInput naming the file and the reason otherwise."""
    if not path.is_file():
        raise InvalidInput(str(path), "no such file")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise InvalidInput(str(path), f"is damaged: {'; '.join(problems[:3])}")
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        events = connection.execute("SELECT count(*) FROM events").fetchone()[0]
        cases = connection.execute("SELECT count(*) FROM cases").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(str(path), f"is not an amends database: {exc}") from None
    finally:
        connection.close()
    if revision is None or revision[0] not in known_revisions():
        raise InvalidInput(str(path), f"has schema revision {revision and revision[0]!r}, unknown to this version")
    return BackupInfo(path, path.stat().st_size, revision[0], events, cases)


def backup_sqlite(db: Database, target: Path) -> BackupInfo:
    """Copy the live database to `target` (a new file, readable by its owner only), checked.

    The copy is one step of the backup API: in WAL mode that step reads one snapshot while writers go on
    appending to the log, so nobody waits for it. (A copy taken in several steps starts again from the beginning
    each time another connection commits in between, so on a busy database it would never finish.)"""
    _sqlite_path(db)
    if target.exists():
        raise InvalidInput(str(target), "exists already; a backup never overwrites a file")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE))  # private before any byte
        with db.engine.connect() as connection:
            source = connection.connection.driver_connection
            assert isinstance(source, sqlite3.Connection)
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy, pages=-1)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            finally:
                copy.close()
        info = check_backup(partial)
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        try:
            os.link(partial, target)  # unlike a rename, fails if a file of that name appeared meanwhile
        except FileExistsError:
            raise InvalidInput(str(target), "exists already; a backup never overwrites a file") from None
        except OSError:  # a file system without hard links (FAT, some network shares): checked, then renamed
            if target.exists():
                raise InvalidInput(str(target), "exists already; a backup never overwrites a file") from None
            partial.rename(target)
        _sync_folder(target.parent)
    finally:
        partial.unlink(missing_ok=True)
    return BackupInfo(target, info.bytes, info.revision, info.events, info.cases)


def _sync_folder(folder: Path) -> None:
    """Make a new name in the folder survive a power cut (the file's bytes are synced already)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restore_sqlite(source: Path, db: Database) -> BackupInfo:
    """Replace the database's content with a checked copy's, in one step of SQLite's backup API (nobody sees a
    half-restored database). Conflict while a server or worker runs on it (`running_on`): they hold the old content
    in memory. The caller brings the schema up to date afterwards (a copy may be older than the code)."""
    target = _sqlite_path(db)
    info = check_backup(source)
    db.create_sqlite_directory()
    try:
        with (
            _holding_in_use(str(target), fcntl.LOCK_EX | fcntl.LOCK_NB),  # BlockingIOError: somebody holds it
            closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as copy,
            db.engine.connect() as connection,
        ):
            live = connection.connection.driver_connection
            assert isinstance(live, sqlite3.Connection)
            copy.backup(live)
    except BlockingIOError:
        raise Conflict(
            f"a server or worker is running on {target}: stop it first (it holds the old content in memory)"
        ) from None
    return BackupInfo(target, target.stat().st_size, info.revision, info.events, info.cases)
