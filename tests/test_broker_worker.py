"""Broker mode end to end inside one process, with a real nats-server and the real PostgreSQL: workers own partitions
through advisory locks, store what the stream holds once, find what the embedded process finds, hand partitions over
when a worker joins or leaves, and say what they do on /readyz and /metrics. The test with three worker processes and
a `kill -9` is tests/test_scale_out.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from amends.broker_worker import BrokerWorker
from amends.cli import app as cli
from amends.config import Settings, SettingsError, load_settings
from amends.detect.partitioned import LostPartition, PartitionDetection, partition_cursor
from amends.detect.service import Detection
from amends.errors import InvalidInput
from amends.events import Item, ingest_items
from amends.events.broker import Delivered, EventBroker, partition_of
from amends.store import Database, tables, upgrade
from amends.web import create_app
from amends.web.worker import worker_app
from amends.world import generate_world
from tests.conftest import SECRET, NatsServer, new_key

PARTITIONS = 4
LATENESS = timedelta(hours=1)


def broker_settings(db: Database, nats_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url.render_as_string(hide_password=False),
        "secret_key": SECRET,
        "broker_url": nats_url,
        "broker_partitions": PARTITIONS,
        "rule_packs": ("shop",),
        "detect_clock": "events",
        "detect_allowed_lateness": LATENESS,
        "detect_sweep_seconds": 0.2,
        "detect_sweep_in_serve": False,
        **overrides,
    }
    return Settings(**values)


@contextmanager
def running(worker: BrokerWorker) -> Iterator[BrokerWorker]:
    """The worker running on a thread of its own until the block ends."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(worker.run(stop))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
    assert not failure, failure


def a_worker(db: Database, settings: Settings) -> BrokerWorker:
    return BrokerWorker(db, settings, Detection.from_settings(db, settings), rebalance_seconds=0.2, fetch_timeout=0.2)


def wait_for(condition: Callable[[], bool], *, timeout: float = 60, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def publish(nats_url: str, envelopes: list[dict[str, Any]]) -> list[Any]:
    async def run() -> list[Any]:
        async with EventBroker(nats_url, partitions=PARTITIONS) as broker:
            return await broker.publish(envelopes)

    return asyncio.run(run())


def scalar(db: Database, query: str) -> Any:
    with db.engine.connect() as connection:
        return connection.execute(sa.text(query)).scalar_one()


def wait_stable(read: Callable[[], Any], *, seconds: float = 3.0, timeout: float = 120) -> Any:
    """What `read` gives once it has not changed for `seconds` (the workers sweep every 0.2 s: a partition that has
    taken every message moves its watermark to the latest event time of all within one sweep; a watermark that
    moved without firing anything is not written, so there is nothing else to wait on)."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() - since < seconds:
        if time.monotonic() > deadline:
            raise AssertionError("never stable")
        time.sleep(0.2)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
    return value


def incidents(db: Database) -> list[tuple[Any, ...]]:
    i = tables.incidents
    with db.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                i.c.rule_id,
                i.c.key,
                i.c.customer_id,
                i.c.severity,
                i.c.playbook,
                i.c.status,
                i.c.failure_at,
                i.c.resolved_at,
                i.c.facts,
            )
        ).all()
    return sorted((*row[:8], orjson.dumps(row.facts, option=orjson.OPT_SORT_KEYS)) for row in rows)


def embedded(tmp_path: Path, settings: Settings, batches: list[list[dict[str, Any]]]) -> Database:
    """The same events through one embedded process on SQLite, batch by batch as the API would store them."""
    db = Database(f"sqlite:///{tmp_path / 'embedded.db'}")
    upgrade(db)
    local = settings.model_copy(update={"broker_url": None, "database_url": f"sqlite:///{tmp_path / 'embedded.db'}"})
    detection = Detection.from_settings(db, local)
    assert not detection.partitioned
    for batch in batches:
        ingest_items(db, [Item(e) for e in batch], received_at=datetime.now(UTC), watcher=detection.detector)
    detection.detector.sweep(db)
    return db


def a_world(**options: Any) -> list[dict[str, Any]]:
    return list(generate_world("shop", customers=300, days=40, seed=3, **options))


def test_a_worker_stores_each_event_once_and_finds_exactly_what_the_embedded_process_finds(
    pg: Database, nats_server: str, tmp_path: Path
) -> None:
    events = a_world(late_share=0.03, duplicate_share=0.03, max_lateness=timedelta(minutes=30))
    unique = {(e["source"], e["id"]) for e in events}
    batches = [events[start : start + 250] for start in range(0, len(events), 250)]
    acknowledged = [ack for batch in batches for ack in publish(nats_server, batch)]
    assert sum(not ack.duplicate for ack in acknowledged) == len(unique)  # JetStream dropped the resent copies
    publish(nats_server, events[:50])  # a client retrying after lost acknowledgements: stored once all the same
    settings = broker_settings(pg, nats_server)

    with running(a_worker(pg, settings)) as worker:
        wait_for(lambda: scalar(pg, "SELECT count(*) FROM events") == len(unique), what="every event stored")
        found = wait_stable(lambda: incidents(pg))
        assert sorted(worker.owned) == list(range(PARTITIONS))
        assert worker.taken_total["invalid"] == 0

    reference = embedded(tmp_path, settings, batches)
    assert len(found) > 20  # the shop world's rules fire: the comparison below is not of two empty lists
    assert found == incidents(reference)
    # Each partition's state is kept under its own name; positions match the stream.
    with pg.engine.connect() as connection:
        names = set(connection.execute(sa.text("SELECT DISTINCT detector FROM detect_state")).scalars())
        positions: dict[int, int] = dict(
            connection.execute(sa.text("SELECT partition, seq FROM broker_positions")).all()
        )
    assert names <= {partition_cursor(p, PARTITIONS) for p in range(PARTITIONS)}
    assert set(positions) == set(range(PARTITIONS))
    assert max(positions.values()) == len(unique)  # the stream's last message: copies were never stored in it


def test_a_worker_that_joins_takes_its_share_and_one_that_leaves_hands_its_partitions_back(
    pg: Database, nats_server: str
) -> None:
    settings = broker_settings(pg, nats_server)
    first, second = a_worker(pg, settings), a_worker(pg, settings)
    second.name += "-b"  # two workers in one process: only the name in the logs differs
    with running(first):
        wait_for(lambda: len(first.owned) == PARTITIONS, what="the first worker to own every partition")
        with running(second):
            wait_for(lambda: len(first.owned) == len(second.owned) == PARTITIONS // 2, what="a fair share each")
            assert not set(first.owned) & set(second.owned)
            publish(nats_server, a_world()[:400])
            wait_for(lambda: scalar(pg, "SELECT count(*) FROM events") == 400, what="both to store their partitions")
            assert first.taken_total["accepted"] > 0
            assert second.taken_total["accepted"] > 0
        wait_for(lambda: len(first.owned) == PARTITIONS, what="the first worker to take the partitions back")
        publish(nats_server, a_world()[400:600])
        wait_for(lambda: scalar(pg, "SELECT count(*) FROM events") == 600, what="the rest, after the handover")


def test_a_partition_count_other_than_the_stored_positions_stops_the_worker_naming_the_setting(
    pg: Database, nats_server: str
) -> None:
    settings = broker_settings(pg, nats_server)
    with pg.engine.begin() as connection:
        connection.execute(  # taken under 8 partitions
            tables.broker_positions.insert().values(stream="AMENDS_EVENTS", partition=0, partitions=8,
                                                    stream_created="", epoch=1, seq=10, updated_at=datetime.now(UTC))
        )  # fmt: skip
    worker = a_worker(pg, settings)
    with pytest.raises(InvalidInput, match="broker_partitions") as raised:
        asyncio.run(asyncio.wait_for(worker.run(asyncio.Event()), timeout=30))
    assert "8 partitions, not 4" in str(raised.value)


def test_the_api_publishes_in_broker_mode_and_answers_503_while_the_broker_is_away(
    pg: Database, nats_server: str
) -> None:
    events = a_world()[:30]
    with TestClient(create_app(broker_settings(pg, nats_server), pg)) as client:
        client.headers["Authorization"] = f"Bearer {new_key(pg)}"
        assert client.get("/readyz").status_code == 200
        first = client.post("/v1/events", json=[*events[:20], {"id": "x"}])
        assert first.status_code == 422
        assert first.json()["accepted"] == 20
        assert first.json()["rejected"][0]["index"] == 20
        again = client.post("/v1/events", json=events[:25])
        assert again.json() == {"accepted": 5, "duplicates": 20, "rejected": []}
    assert scalar(pg, "SELECT count(*) FROM events") == 0  # published, not stored: that is the workers' job

    async def stream_count() -> int:
        async with EventBroker(nats_server, partitions=PARTITIONS) as broker:
            info = await broker._js.stream_info(broker.stream)
            return int(info.state.messages)

    assert asyncio.run(stream_count()) == 25

    away = broker_settings(pg, "nats://127.0.0.1:1")
    with TestClient(create_app(away, pg)) as client:
        client.headers["Authorization"] = f"Bearer {new_key(pg, 'other')}"
        refused = client.post("/v1/events", json=events[:3])
        assert refused.status_code == 503
        assert "broker unavailable" in refused.text
        assert client.get("/readyz").status_code == 503


def test_ingest_publishes_a_file_in_broker_mode(
    pg: Database, nats_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = a_world()[:120]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events) + b'{"id": "bad"}\n')
    for name, value in {
        "AMENDS_DATABASE_URL": pg.url.render_as_string(hide_password=False),
        "AMENDS_SECRET_KEY": SECRET,
        "AMENDS_BROKER_URL": nats_server,
        "AMENDS_BROKER_PARTITIONS": str(PARTITIONS),
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["ingest", str(path)])
    assert result.exit_code == 1, result.output  # one row rejected
    assert "Published to AMENDS_EVENTS" in result.output
    assert scalar(pg, "SELECT count(*) FROM events") == 0
    with running(a_worker(pg, broker_settings(pg, nats_server))):
        wait_for(lambda: scalar(pg, "SELECT count(*) FROM events") == 120, what="the worker to store the file")
    subjects = {e["subject"] for e in events}
    assert {partition_of(s, PARTITIONS) for s in subjects} == set(range(PARTITIONS))


def test_the_worker_reports_readiness_and_prometheus_metrics(pg: Database, nats_server: str) -> None:
    settings = broker_settings(pg, nats_server)
    worker = a_worker(pg, settings)
    client = TestClient(worker_app(worker))
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503  # not started: no broker, no database yet
    publish(nats_server, a_world()[:200])
    with running(worker):
        wait_for(lambda: scalar(pg, "SELECT count(*) FROM events") == 200, what="the events stored")
        wait_for(lambda: all(s.lag == 0 for s in worker.owned.values()), timeout=30, what="the lag to be read")
        assert client.get("/readyz").json()["partitions"] == list(range(PARTITIONS))
        text = client.get("/metrics").text
    assert "amends_worker_ready 1.0" in text
    assert f"amends_worker_partitions_owned {float(PARTITIONS)}" in text
    assert 'amends_partition_lag{partition="0"} 0.0' in text
    assert 'amends_worker_events_total{outcome="accepted"} 200.0' in text
    assert "amends_outbox_backlog 0.0" in text


def test_broker_mode_needs_postgresql() -> None:
    with pytest.raises(SettingsError, match=r"broker_url.*PostgreSQL"):
        load_settings(database_url="sqlite:///x.db", broker_url="nats://localhost:4222")
    with pytest.raises(SettingsError, match=r"broker_url.*NATS URL"):
        load_settings(database_url="postgresql://a@b/c", broker_url="http://localhost:4222")


def test_a_worker_and_the_api_ride_out_a_nats_restart(pg: Database, nats: NatsServer) -> None:
    events = a_world()[:600]
    settings = broker_settings(pg, nats.url)
    worker = a_worker(pg, settings)
    with running(worker), TestClient(create_app(settings, pg)) as client:
        client.headers["Authorization"] = f"Bearer {new_key(pg)}"
        assert client.post("/v1/events", json=events[:300]).status_code == 200
        wait_for(lambda: scalar(pg, "SELECT count(*) FROM events") == 300, what="the first half stored")
        nats.stop()
        wait_for(lambda: not worker.ready, what="the worker to notice")
        refused = client.post("/v1/events", json=events[300:])
        assert refused.status_code == 503  # nothing accepted while the broker is away: the client sends it again
        assert client.get("/readyz").status_code == 503
        nats.start()  # the same port and store: the stream and the consumers are still there
        wait_for(lambda: client.get("/readyz").status_code == 200, what="the API to reconnect")
        assert client.post("/v1/events", json=events[300:]).status_code == 200
        wait_for(lambda: scalar(pg, "SELECT count(*) FROM events") == 600, what="the second half stored")
        assert worker.ready


def test_a_worker_that_lost_its_partition_stores_nothing_more(pg: Database, nats_server: str) -> None:
    """Fencing: the stale owner's batch, after another worker claimed the partition, rolls back whole."""
    events = [e for e in a_world() if partition_of(e["subject"], PARTITIONS) == 0][:40]
    settings = broker_settings(pg, nats_server)

    def detection() -> PartitionDetection:
        return PartitionDetection(pg, Detection.from_settings(pg, settings).rules, stream="AMENDS_EVENTS",
                                  partition=0, partitions=PARTITIONS, lateness=LATENESS, clock="events")  # fmt: skip

    stale, new = detection(), detection()
    assert stale.claim("created-1") == 0
    now = datetime.now(UTC)
    stale.take([Delivered(n + 1, e, now) for n, e in enumerate(events[:20])])
    assert new.claim("created-1") == 20  # goes on after what the first one stored
    with pytest.raises(LostPartition):
        stale.take([Delivered(n + 21, e, now) for n, e in enumerate(events[20:])])
    assert scalar(pg, "SELECT count(*) FROM events") == 20  # nothing of the stale batch was kept
    new.take([Delivered(n + 21, e, now) for n, e in enumerate(events[20:])])
    assert scalar(pg, "SELECT count(*) FROM events") == 40
    assert scalar(pg, "SELECT seq FROM broker_positions") == 40
    # A stream made anew (another creation time) starts its sequence again: the stored positions do not apply.
    with pytest.raises(InvalidInput, match="broker_stream"):
        detection().claim("created-2")


def test_a_publisher_with_another_partition_count_is_refused_by_the_stream(nats_server: str) -> None:
    async def run() -> None:
        async with EventBroker(nats_server, partitions=PARTITIONS):
            pass
        async with EventBroker(nats_server, partitions=PARTITIONS * 2):
            pass

    with pytest.raises(InvalidInput, match=f"partitioned {PARTITIONS} ways, not {PARTITIONS * 2}"):
        asyncio.run(run())


def test_an_event_larger_than_a_broker_message_is_rejected_alone(pg: Database, nats_server: str) -> None:
    events = a_world()[:3]
    big = {**events[1], "data": {"note": "x" * (1024 * 1024 + 10)}}
    with TestClient(create_app(broker_settings(pg, nats_server), pg)) as client:
        client.headers["Authorization"] = f"Bearer {new_key(pg)}"
        answer = client.post("/v1/events", json=[events[0], big, events[2]])
    assert answer.status_code == 422
    assert answer.json()["accepted"] == 2
    [rejected] = answer.json()["rejected"]
    assert rejected["index"] == 1
    assert "more than the broker's message limit" in rejected["reason"]
