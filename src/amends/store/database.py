"""The database: one engine per process, and the unit of work that is the only place a commit happens.

Database errors are translated here, where they enter: a connection that cannot be made or is lost
becomes Unavailable (nothing was written), a unique key violated becomes Conflict.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson
import psycopg
import sqlalchemy as sa
from psycopg import sql as pg_sql
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from amends.config import DEFAULT_SQLITE_CACHE_MIB, Settings
from amends.errors import Conflict, Unavailable

__all__ = ["Database", "UnitOfWork"]


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


class Database:
    """An engine and what the rest of amends needs of it: units of work and a health check."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        busy_timeout_seconds: float = 30.0,
        sqlite_cache_mib: int = DEFAULT_SQLITE_CACHE_MIB,
    ) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self._write_lock: threading.Lock | None = None
        if self.dialect == "sqlite":
            self._write_lock = threading.Lock()
            self.engine = _sqlite_engine(
                url, echo=echo, busy_timeout_ms=int(busy_timeout_seconds * 1000), cache_kib=sqlite_cache_mib * 1024
            )
        else:
            self.engine = sa.create_engine(
                url,
                echo=echo,
                hide_parameters=True,  # a statement's values (customers' data) never in an error's text or a log
                pool_pre_ping=True,
                json_serializer=_json_text,
                json_deserializer=orjson.loads,
                # TCP keepalives: a server that vanished is noticed within about half a minute, not the system's
                # two hours (a broker-mode worker must learn soon that its lock session is gone; docs/scaling.md).
                connect_args={
                    "connect_timeout": 5,
                    "keepalives": 1,
                    "keepalives_idle": 10,
                    "keepalives_interval": 5,
                    "keepalives_count": 3,
                    "tcp_user_timeout": 30_000,
                },
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The database the settings name, tuned as they say."""
        return cls(settings.database_url, sqlite_cache_mib=settings.sqlite_cache_mib)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def unit_of_work(self, *, writes: bool = False) -> UnitOfWork:
        """A new unit of work; use it as `with db.unit_of_work() as uow: ...; uow.commit()`.

        `writes=True` on SQLite makes the unit wait its turn on a lock of this process before it begins:
        SQLite has one writer at a time, and a writer waiting inside SQLite polls with sleeps of up to
        100 ms, while one waiting on the lock starts the moment the previous one ends.
        """
        return UnitOfWork(self.engine, self._write_lock if writes else None)

    def ping(self) -> None:
        """Raise Unavailable unless the database answers a trivial query."""
        with translate_errors(), self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def create_sqlite_directory(self) -> None:
        """Make the folder an SQLite database file is to live in."""
        if self.is_sqlite and self.url.database not in (None, "", ":memory:"):
            Path(str(self.url.database)).parent.mkdir(parents=True, exist_ok=True)

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"


def _sqlite_engine(url: str, *, echo: bool, busy_timeout_ms: int, cache_kib: int) -> Engine:
    engine = sa.create_engine(
        url,
        echo=echo,
        hide_parameters=True,  # a statement's values (customers' data) never in an error's text or a log
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        connect_args={"timeout": busy_timeout_ms / 1000},
    )

    @sa_event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # WAL lets readers work beside the one writer; FULL makes every commit survive power loss,
            # which is what "accepted means durable" needs. Foreign keys are off by default in SQLite.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
            # One connection alone may fill the whole cache (a bulk load); all of them together stay below it too:
            # SQLite's soft heap limit is the process's, and SQLite gives back cached pages as it nears it. Without
            # it, every connection of the pool could hold a cache of its own, and a server's memory grew with them.
            cursor.execute(f"PRAGMA cache_size=-{cache_kib:d}")  # negative: KiB rather than pages
            cursor.execute(f"PRAGMA soft_heap_limit={cache_kib * 1024:d}")
        finally:
            cursor.close()

    return engine


# Errors that mean the database could not be reached or the connection was lost. psycopg's own appear
# where the store talks to the driver directly (the bulk inserts).
_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
)
_CONFLICT = (sa_exc.IntegrityError, psycopg.IntegrityError, sqlite3.IntegrityError)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn the database driver's errors into amends' own, keeping the cause."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise _unavailable(exc) from exc
    except _CONFLICT as exc:
        raise _conflict(exc) from exc


def _unavailable(exc: BaseException) -> Unavailable:
    """Why the database could not do the work, in words: a full disk is said as such (SQLite's SQLITE_FULL,
    PostgreSQL's disk_full), since no retry helps until someone makes room. The driver's own words (a host, a user)
    stay in the message, for the log; what is shown to a caller leaves them out."""
    cause = getattr(exc, "orig", None) or exc
    full = (
        getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or getattr(cause, "sqlstate", None) == "53100"
    )
    if full:
        shown = "the database's disk is full; nothing of this was stored: make room, then retry"
        return Unavailable(f"the database's disk is full ({_first_line(exc)}); nothing of this was stored", shown=shown)
    return Unavailable(f"database unavailable: {_first_line(exc)}", shown="database unavailable; try again shortly")


def _conflict(exc: BaseException) -> Conflict:
    """A constraint of the database refused the write; which one (its table and columns) is for the log."""
    shown = (
        "conflicts with stored data (something with the same key exists, or a reference is missing); "
        "nothing of this was stored"
    )
    return Conflict(f"conflicts with stored data: {_first_line(exc)}", shown=shown)


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


# Rows per json_each statement: keeps one statement's JSON text far below SQLite's string limit (1 GB).
_JSON_EACH_ROWS = 10_000


class UnitOfWork:
    """One transaction. Work is rolled back unless `commit()` is called before the block ends."""

    connection: Connection

    def __init__(self, engine: Engine, write_lock: threading.Lock | None = None) -> None:
        self._engine = engine
        self._write_lock = write_lock
        self._committed = False
        self._staged: dict[str, tuple[list[Any], Callable[[UnitOfWork, list[Any]], None]]] = {}

    def __enter__(self) -> Self:
        if self._write_lock is not None:
            self._write_lock.acquire()
        try:
            with translate_errors():
                self.connection = self._engine.connect()
                self._transaction = self.connection.begin()
        except BaseException:
            self._release()
            raise
        self._committed = False
        return self

    def _release(self) -> None:
        # Runs once per unit: when __enter__ fails (and __exit__ is not called), or from __exit__.
        if self._write_lock is not None:
            self._write_lock.release()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if not self._committed and self._transaction.is_active:
                self._transaction.rollback()
        except _UNAVAILABLE:
            # The connection died under us; the server has already discarded the transaction.
            self.connection.invalidate()
        finally:
            self.connection.close()
            self._release()
        if isinstance(exc, _UNAVAILABLE):
            raise _unavailable(exc) from exc
        if isinstance(exc, _CONFLICT):
            raise _conflict(exc) from exc

    @property
    def dialect(self) -> str:
        return self.connection.dialect.name

    def commit(self) -> None:
        """Write what was staged (see `staged`), then make the work of this unit durable."""
        with translate_errors():
            for name, (items, write) in list(self._staged.items()):
                del self._staged[name]
                if items:
                    write(self, items)
            self._transaction.commit()
        self._committed = True

    def staged(self, name: str, write: Callable[[UnitOfWork, list[Any]], None]) -> list[Any]:
        """A list of items to be written by `write` just before this unit commits (the same list for the same
        `name`), for rows best written last: under a lock that is then held only for the commit's tail."""
        if name not in self._staged:
            self._staged[name] = ([], write)
        return self._staged[name][0]

    def execute(self, statement: sa.Executable, parameters: Any = None) -> sa.CursorResult[Any]:
        """Run one statement inside this unit of work."""
        return self.connection.execute(statement, parameters)

    def insert_missing(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        """Insert the rows whose unique keys are not stored yet; return how many were inserted.

        `rows` hold values in the order of `columns`, in the form `bulk_values(dialect)` makes them: on
        SQLite JSON scalars (text, numbers, None), on PostgreSQL what psycopg's COPY takes.
        Rows that collide with a stored row, or with an earlier row of the same call, are skipped.
        This is the bulk path: it talks to the driver directly, with no per-value processing.
        """
        if not rows:
            return 0
        if self.dialect == "postgresql":
            return len(self._copy_in(table, columns, rows))
        return len(self._json_each_in(table, columns, rows))

    def insert_new(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, returning: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """`insert_missing`, giving back the `returning` columns of each row it inserted (in no set order)."""
        if not rows:
            return []
        if self.dialect == "postgresql":
            return self._copy_in(table, columns, rows, returning=returning)
        return self._json_each_in(table, columns, rows, returning=returning)

    def upsert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, key: Sequence[str]) -> None:
        """Insert the rows, replacing the other columns of a stored row with the same `key` (a unique key).
        Two rows of one call must not share a key."""
        if not rows:
            return
        update = [c for c in columns if c not in key]
        if self.dialect == "postgresql":
            self._copy_in(table, columns, rows, key=key, update=update)
        else:
            self._json_each_in(table, columns, rows, key=key, update=update)

    def delete_keys(self, table: str, key: Sequence[str], keys: Sequence[Sequence[str]]) -> int:
        """Delete the rows whose text `key` columns hold one of `keys`; return how many went."""
        if not keys:
            return 0
        quote = self._quote
        names = ", ".join(quote(c) for c in key)
        driver = self.connection.connection.driver_connection
        deleted = 0
        with translate_errors():
            if isinstance(driver, psycopg.Connection):
                arrays = pg_sql.SQL(", ").join(pg_sql.SQL("%s::text[]") for _ in key)
                delete = pg_sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
                    pg_sql.Identifier(table), pg_sql.SQL(", ").join(pg_sql.Identifier(c) for c in key), arrays
                )
                columns = [[row[i] for row in keys] for i in range(len(key))]
                with driver.cursor() as pg_cursor:
                    pg_cursor.execute(delete, columns)
                    deleted = pg_cursor.rowcount
            else:
                assert isinstance(driver, sqlite3.Connection)
                values = ", ".join(f"value ->> {i:d}" for i in range(len(key)))
                # Identifiers are the code's own and quoted; the keys are bound as one parameter.
                statement = f"DELETE FROM {quote(table)} WHERE ({names}) IN (SELECT {values} FROM json_each(?))"  # noqa: S608
                for start in range(0, len(keys), _JSON_EACH_ROWS):
                    cursor = driver.execute(statement, (orjson.dumps(keys[start : start + _JSON_EACH_ROWS]).decode(),))
                    deleted += cursor.rowcount
                    cursor.close()
        return deleted

    @property
    def _quote(self) -> Callable[[str], str]:
        return self.connection.dialect.identifier_preparer.quote

    def _json_each_in(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        key: Sequence[str] = (),
        update: Sequence[str] = (),
        returning: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        # One statement per group of rows: the rows travel as one JSON array that SQLite unpacks with
        # json_each. Besides saving a Python round trip per row, a single statement runs without the
        # GIL from start to end, so another thread (the next group being parsed) works meanwhile.
        # Rows whose `key` is stored get their `update` columns replaced, or are skipped if there are none.
        # Gives back the `returning` columns of the rows written, or one empty tuple per row written.
        quote = self._quote
        names = ", ".join(quote(c) for c in columns)
        values = ", ".join(f"value ->> {i:d}" for i in range(len(columns)))
        # Identifiers are the code's own and quoted; the rows are bound as one parameter.
        statement = f"INSERT INTO {quote(table)} ({names}) SELECT {values} FROM json_each(?) WHERE true"  # noqa: S608
        if update:
            keys = ", ".join(quote(c) for c in key)
            statement += f" ON CONFLICT ({keys}) DO UPDATE SET "
            statement += ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in update)
        else:
            statement += " ON CONFLICT DO NOTHING"
        if returning:
            statement += f" RETURNING {', '.join(quote(c) for c in returning)}"
        driver = self.connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        written: list[tuple[Any, ...]] = []
        with translate_errors():
            for start in range(0, len(rows), _JSON_EACH_ROWS):
                group = orjson.dumps(rows[start : start + _JSON_EACH_ROWS]).decode()
                cursor = driver.execute(statement, (group,))
                if returning:
                    written += cursor.fetchall()
                else:
                    written += [()] * cursor.rowcount
                cursor.close()
        return written

    def _copy_in(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        key: Sequence[str] = (),
        update: Sequence[str] = (),
        returning: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        # PostgreSQL's fastest way in is COPY, which cannot skip conflicts: so COPY into a temporary
        # table shaped like the target, then move the rows across with the ON CONFLICT clause.
        target = pg_sql.Identifier(table)
        stage = pg_sql.Identifier(f"amends_stage_{table}")
        names = pg_sql.SQL(", ").join(pg_sql.Identifier(c) for c in columns)
        driver = self.connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        move = pg_sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ").format(target, names, names, stage)
        if update:
            move += pg_sql.SQL("({}) DO UPDATE SET {}").format(
                pg_sql.SQL(", ").join(pg_sql.Identifier(c) for c in key),
                pg_sql.SQL(", ").join(pg_sql.SQL("{0} = excluded.{0}").format(pg_sql.Identifier(c)) for c in update),
            )
        else:
            move += pg_sql.SQL("DO NOTHING")
        if returning:
            move += pg_sql.SQL(" RETURNING {}").format(pg_sql.SQL(", ").join(pg_sql.Identifier(c) for c in returning))
        with translate_errors(), driver.cursor() as cursor:
            cursor.execute(
                pg_sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                    stage, names, target
                )
            )
            with cursor.copy(pg_sql.SQL("COPY {} ({}) FROM STDIN").format(stage, names)) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(move)
            written: list[tuple[Any, ...]] = cursor.fetchall() if returning else [()] * cursor.rowcount
            cursor.execute(pg_sql.SQL("DROP TABLE {}").format(stage))
        return written
