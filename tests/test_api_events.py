"""POST /v1/events: every way in, and every way a request can be wrong."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.access import Scope, revoke_key
from amends.store import Database
from amends.web import create_app
from tests.conftest import NOW, an_event, count_rows, new_key, settings_for, unreachable_url


def post(client: TestClient, body: object, content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post("/v1/events", content=raw, headers={"Content-Type": content_type})


def test_a_single_event_is_stored(client: TestClient, db: Database) -> None:
    response = client.post("/v1/events", json=an_event(1))
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert count_rows(db, "events") == 1


def test_a_structured_cloudevent_is_stored(client: TestClient, db: Database) -> None:
    response = post(client, an_event(1), "application/cloudevents+json; charset=utf-8")
    assert response.status_code == 200
    assert count_rows(db, "events") == 1


def test_a_batch_is_stored_and_a_repeat_is_counted_not_refused(client: TestClient, db: Database) -> None:
    batch = [an_event(n) for n in range(1, 101)]
    first = post(client, batch, "application/cloudevents-batch+json")
    again = post(client, [*batch[50:], an_event(101)])
    assert first.json() == {"accepted": 100, "duplicates": 0, "rejected": []}
    assert again.status_code == 200
    assert again.json() == {"accepted": 1, "duplicates": 50, "rejected": []}
    assert count_rows(db, "events") == 101
    assert count_rows(db, "customers") == 7


def test_ndjson_is_stored_line_by_line(client: TestClient, db: Database) -> None:
    body = b"\n".join(orjson.dumps(an_event(n)) for n in range(1, 4)) + b"\n\n"
    response = post(client, body, "application/x-ndjson")
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}


def test_a_malformed_ndjson_line_is_rejected_alone(client: TestClient, db: Database) -> None:
    body = orjson.dumps(an_event(1)) + b'\n{"id": "x",\n' + orjson.dumps(an_event(2))
    response = post(client, body, "application/x-ndjson")
    assert response.status_code == 422
    result = response.json()
    assert result["accepted"] == 2
    [rejected] = result["rejected"]
    assert (rejected["index"], rejected["line"]) == (1, 2)
    assert "malformed JSON" in rejected["reason"]


def test_malformed_json_is_a_400_with_the_position(client: TestClient, db: Database) -> None:
    response = post(client, b'[\n  {"id": "a", "source": }\n]')
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "MalformedJSON"
    assert body["position"]["line"] == 2
    assert body["position"]["column"] > 1
    assert "line 2, column" in body["reason"]
    assert count_rows(db, "events") == 0


def test_a_bad_item_is_named_and_the_others_are_stored(client: TestClient, db: Database) -> None:
    batch = [an_event(1), an_event(2, subject=None), an_event(3, time=12), an_event(4)]
    response = post(client, batch)
    assert response.status_code == 422
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [
            {"index": 1, "field": "subject", "reason": "required"},
            {
                "index": 2,
                "field": "time",
                "reason": "must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z, not a number",
            },
        ],
    }
    assert count_rows(db, "events") == 2


def test_a_nul_character_is_refused_by_name_and_the_rest_is_stored_intact(client: TestClient, db: Database) -> None:
    # Neither engine can keep NUL in text; a string that merely mentions "\\u0000" is fine.
    batch = [
        an_event(1, data={"note": {"lines": ["ok", "bad\x00"]}}),
        an_event(2, id="evt-\x002"),
        an_event(3, data={"note": "a backslash-u0000: \\u0000", "emoji": "😀", "quote": '"'}),
    ]
    response = post(client, batch)
    assert response.status_code == 422
    rejected = response.json()["rejected"]
    assert [(r["index"], r["field"]) for r in rejected] == [(0, "data.note.lines.1"), (1, "id")]
    assert "NUL" in rejected[0]["reason"]
    stored = client.get("/v1/customers/C-3/timeline").json()["events"]
    assert [item["event"]["data"] for item in stored] == [batch[2]["data"]]


def test_a_naive_timestamp_is_rejected(client: TestClient, db: Database) -> None:
    response = client.post("/v1/events", json=an_event(1, time="2026-05-01T10:00:00"))
    assert response.status_code == 422
    assert response.json()["rejected"][0]["field"] == "time"


def test_a_batch_over_the_limit_is_a_413_and_nothing_is_stored(db: Database) -> None:
    app = create_app(settings_for(db, max_batch_events=10), db)
    with TestClient(app, headers={"Authorization": f"Bearer {new_key(db)}"}) as client:
        response = post(client, [an_event(n) for n in range(11)])
        assert response.status_code == 413
        ndjson = post(client, b"\n".join(orjson.dumps(an_event(n)) for n in range(11)), "application/x-ndjson")
        assert ndjson.status_code == 413
        assert post(client, [an_event(n) for n in range(10)]).status_code == 200
    assert count_rows(db, "events") == 10


def test_a_body_over_the_byte_limit_is_a_413(db: Database) -> None:
    app = create_app(settings_for(db, max_body_bytes=2048), db)
    with TestClient(app, headers={"Authorization": f"Bearer {new_key(db)}"}) as client:
        response = post(client, [an_event(n) for n in range(40)])
    assert response.status_code == 413
    assert count_rows(db, "events") == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/json; charset=latin-1"])
def test_a_wrong_content_type_is_a_415(client: TestClient, db: Database, content_type: str) -> None:
    response = post(client, an_event(1), content_type)
    assert response.status_code == 415
    assert response.json()["field"] == "Content-Type"


def test_the_wrong_shape_for_the_content_type_is_a_422(client: TestClient, db: Database) -> None:
    response = post(client, [an_event(1)], "application/cloudevents+json")
    assert response.status_code == 422
    assert response.json()["reason"] == "expected an event object"


def test_no_key_is_a_401(db: Database) -> None:
    with TestClient(create_app(settings_for(db), db)) as client:
        response = client.post("/v1/events", json=an_event(1))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert count_rows(db, "events") == 0


@pytest.mark.parametrize("key", ["nonsense", "amends_000000000000_" + "a" * 43])
def test_an_unknown_key_is_a_401(db: Database, key: str) -> None:
    with TestClient(create_app(settings_for(db), db), headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.post("/v1/events", json=an_event(1)).status_code == 401


def test_a_revoked_key_is_a_401(db: Database) -> None:
    key = new_key(db, "crm")
    with TestClient(create_app(settings_for(db), db), headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.post("/v1/events", json=an_event(1)).status_code == 200
        with db.unit_of_work() as uow:
            revoke_key(uow, "crm", now=NOW)
            uow.commit()
        response = client.post("/v1/events", json=an_event(2))
    assert response.status_code == 401
    assert response.json()["reason"] == "the API key has been revoked"
    assert count_rows(db, "events") == 1


def test_a_key_without_the_scope_is_a_403(db: Database) -> None:
    key = new_key(db, "reader", [Scope.CUSTOMERS_READ])
    with TestClient(create_app(settings_for(db), db), headers={"Authorization": f"Bearer {key}"}) as client:
        response = client.post("/v1/events", json=an_event(1))
    assert response.status_code == 403
    assert count_rows(db, "events") == 0


def test_an_unreachable_database_is_a_503(engine: str, tmp_path: Path) -> None:
    db = Database(unreachable_url(engine, tmp_path))
    settings = settings_for(db)
    with TestClient(create_app(settings, db), headers={"Authorization": "Bearer whatever"}) as client:
        response = client.post("/v1/events", json=an_event(1))
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_a_locked_sqlite_database_is_a_503_and_nothing_is_half_written(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/amends.db"
    owner = Database(url)
    from amends.store import upgrade

    upgrade(owner)
    key = new_key(owner)
    impatient = Database(url, busy_timeout_seconds=0.2)
    with TestClient(create_app(settings_for(impatient), impatient), headers={"Authorization": f"Bearer {key}"}) as c:
        with owner.engine.connect() as blocker:
            blocker.exec_driver_sql("BEGIN IMMEDIATE")  # another writer holds the database
            response = c.post("/v1/events", json=[an_event(n) for n in range(50)])
            blocker.rollback()
        assert response.status_code == 503
        assert count_rows(owner, "events") == 0
        assert count_rows(owner, "customers") == 0
        assert c.post("/v1/events", json=[an_event(n) for n in range(50)]).json()["accepted"] == 50


@pytest.mark.postgres
def test_a_connection_lost_mid_batch_is_a_503_and_nothing_is_half_written(postgres_migrated: Database) -> None:
    db = postgres_migrated
    with db.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE api_keys, events, customers RESTART IDENTITY CASCADE"))
        # Hold every insert into events for a while, so the batch is caught half-way: customers written,
        # events not yet.
        connection.execute(
            sa.text(
                "CREATE OR REPLACE FUNCTION amends_test_stall() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(5); RETURN NULL; END $$"
            )
        )
        connection.execute(
            sa.text(
                "CREATE TRIGGER amends_test_stall BEFORE INSERT ON events "
                "FOR EACH STATEMENT EXECUTE FUNCTION amends_test_stall()"
            )
        )
    key = new_key(db)
    killed = threading.Event()

    def kill_the_writer() -> None:
        url = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as admin:
            for _ in range(100):
                rows = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'INSERT INTO \"events\"%'"
                    " AND pid <> pg_backend_pid()"
                ).fetchall()
                if rows:
                    for (pid,) in rows:
                        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    killed.set()
                    return
                time.sleep(0.05)

    try:
        killer = threading.Thread(target=kill_the_writer)
        killer.start()
        with TestClient(create_app(settings_for(db), db), headers={"Authorization": f"Bearer {key}"}) as client:
            response = client.post("/v1/events", json=[an_event(n) for n in range(50)])
        killer.join()
        assert killed.is_set()
        assert response.status_code == 503
        assert count_rows(db, "events") == 0
        assert count_rows(db, "customers") == 0
    finally:
        with db.engine.begin() as connection:
            connection.execute(sa.text("DROP TRIGGER IF EXISTS amends_test_stall ON events"))
            connection.execute(sa.text("DROP FUNCTION IF EXISTS amends_test_stall()"))
