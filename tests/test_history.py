"""Reading stored history for the batch evaluator, on SQLite and PostgreSQL: what comes back, the bounds and
filters, the progress it reports, and that a backfill of it finds what the streaming evaluator found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest

from amends.detect import Evaluator, fold, parse_rules
from amends.detect.batch import FRAME_SCHEMA, evaluate_history, events_frame
from amends.detect.history import read_history
from amends.errors import Unavailable
from amends.events import Event
from amends.events.ledger import append_events
from amends.store import Database
from tests.conftest import NOW, unreachable_url

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

RULES = parse_rules(
    [
        (
            None,
            """\
rules:
  - id: late-delivery
    kind: absence
    after: order.placed
    expect: order.delivered
    key: data.order_id
    deadline: data.promised_by + 1d
  - id: contact-storm
    kind: count
    on: support.contact
    at_least: 2
    within: 1d
""",
        )
    ]
)


def an_order(number: int, hours: float, kind: str = "order.placed", **data: object) -> Event:
    at = T0 + timedelta(hours=hours)
    body: dict[str, object] = {"order_id": f"O-{number}", **data}
    if kind == "order.placed":
        body["promised_by"] = (at + timedelta(days=2)).isoformat()
    return Event(
        id=f"{kind}-{number}-{hours}", source="https://shop.example.com", type=kind, time=at, subject="C-1", data=body
    )


def store(db: Database, events: list[Event]) -> None:
    with db.unit_of_work(writes=True) as uow:
        append_events(uow, events, received_at=NOW)
        uow.commit()


def canonical(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    """Rows by ledger key, `data` parsed: PostgreSQL gives jsonb back in its own spelling."""
    rows = frame.sort("ord").rows()
    return [(*row[:-1], orjson.loads(row[-1])) for row in rows]


def test_the_stored_events_come_back_as_the_frame_the_batch_evaluator_takes(db: Database) -> None:
    events = [an_order(n, hours=n * 1.5, total=10.5 * n, note="naïve ✓") for n in range(1, 40)]
    events += [an_order(n, hours=n * 1.5 + 20, kind="order.delivered") for n in range(1, 40, 3)]
    store(db, events)

    frame = read_history(db, chunk_rows=7)

    assert frame.schema == pl.Schema(FRAME_SCHEMA)
    assert canonical(frame) == canonical(events_frame(events))


def test_since_is_inclusive_until_exclusive_and_types_filter(db: Database) -> None:
    events = [an_order(n, hours=n) for n in range(10)] + [
        an_order(n, hours=n, kind="order.delivered") for n in range(10)
    ]
    store(db, events)

    frame = read_history(
        db, since=T0 + timedelta(hours=3), until=T0 + timedelta(hours=6), types=["order.delivered"], parallel=3
    )

    assert sorted(frame.get_column("id").to_list()) == [f"order.delivered-{n}-{n}" for n in (3, 4, 5)]
    assert read_history(db, types=[]).height == 0


def test_progress_counts_up_to_the_total_in_chunks(db: Database) -> None:
    store(db, [an_order(n, hours=n) for n in range(25)])
    calls: list[tuple[int, int]] = []

    read_history(db, chunk_rows=4, progress=lambda done, total: calls.append((done, total)))

    assert calls[0] == (0, 25)
    assert calls[-1] == (25, 25)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert len(calls) > 2


def test_an_empty_ledger_gives_an_empty_frame(db: Database) -> None:
    calls: list[tuple[int, int]] = []

    frame = read_history(db, progress=lambda done, total: calls.append((done, total)))

    assert frame.height == 0
    assert frame.schema == pl.Schema(FRAME_SCHEMA)
    assert calls == [(0, 0)]


def test_a_backfill_of_stored_history_finds_what_streaming_found(db: Database) -> None:
    events = [an_order(n, hours=n) for n in range(12)]
    events += [an_order(n, hours=n + 30, kind="order.delivered") for n in range(0, 12, 2)]  # some on time
    events += [an_order(n, hours=n + 90, kind="order.delivered") for n in range(1, 12, 4)]  # some late
    events += [an_order(99, hours=h, kind="support.contact") for h in (1, 5, 40)]
    store(db, events)
    evaluator = Evaluator(RULES)
    streamed = evaluator.observe(sorted(events, key=lambda event: event.time))
    streamed += evaluator.advance(T0 + timedelta(days=10))
    assert evaluator.watermark is not None

    result = evaluate_history(RULES, read_history(db), until=evaluator.watermark)

    assert fold(result.findings) == fold(streamed)
    assert any(incident.status == "resolved_late" for incident in fold(streamed).values())


def test_a_database_that_cannot_be_reached_is_unavailable(engine: str, tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="database unavailable"):
        read_history(Database(unreachable_url(engine, tmp_path)))


def test_bounds_must_be_aware(db: Database) -> None:
    with pytest.raises(ValueError, match="since must be an aware datetime"):
        read_history(db, since=datetime(2025, 1, 1))


def test_what_the_store_just_committed_is_read_at_once_in_the_same_process(db: Database) -> None:
    """The store's writes and the history's reads use one copy of SQLite: a second copy in the process (as ADBC's
    was) missed a delete committed to the write-ahead log, and read the rows as if they were still there."""
    import sqlalchemy as sa

    from amends.events import Item, ingest_items
    from amends.store import tables
    from amends.world import generate_world

    envelopes = list(generate_world("shop", customers=300, days=60, seed=2))
    ingest_items(db, [Item(e) for e in envelopes], received_at=NOW)
    before = read_history(db)
    returned = before.filter(pl.col("type") == "order.returned").height
    assert returned > 0
    with db.unit_of_work(writes=True) as uow:
        uow.execute(sa.delete(tables.events).where(tables.events.c.type == "order.returned"))
        uow.commit()
    after = read_history(db)
    assert after.filter(pl.col("type") == "order.returned").is_empty()
    assert after.height == before.height - returned
