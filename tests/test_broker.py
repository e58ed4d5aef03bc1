"""Broker mode's publishing (events/broker.py) against a real nats-server with JetStream: partitions by customer,
acknowledged publishes, and a retried publish stored once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import nats
import orjson
import pytest

from amends.errors import InvalidInput, Unavailable
from amends.events.broker import SUBJECT_PREFIX, EventBroker, partition_of, subject_of
from amends.events.ledger import dedup_key

START = datetime(2026, 5, 4, 8, tzinfo=UTC)


def envelope(n: int, customer: str) -> dict[str, object]:
    return {"specversion": "1.0", "id": f"e-{n}", "source": "test", "type": "order.placed",
            "time": (START + timedelta(minutes=n)).isoformat(), "subject": customer, "data": {"n": n}}  # fmt: skip


def test_a_customer_always_has_the_same_partition_and_customers_spread_over_them() -> None:
    assert partition_of("C-000001", 1) == 0
    spread = Counter(partition_of(f"C-{n:06d}", 8) for n in range(8_000))
    assert set(spread) == set(range(8))
    assert max(spread.values()) < 1.1 * 1_000  # within 10 % of an even share
    assert subject_of(3) == f"{SUBJECT_PREFIX}.3"
    assert subject_of(3, "OTHER") == f"{SUBJECT_PREFIX}.OTHER.3"  # another stream's subjects never overlap
    with pytest.raises(InvalidInput, match="partitions"):
        partition_of("C-1", 0)


def test_the_partition_hash_is_stable_across_releases() -> None:
    # Pinned values (BLAKE2b-64 of the customer id, big-endian, modulo the count): changing the hash would send a
    # customer's new events to another partition than their old ones, and two workers would own one customer.
    assert [partition_of(c, 16) for c in ("C-000001", "C-000002", "passenger-7")] == [14, 5, 1]
    assert [partition_of(c, 1000) for c in ("C-000001", "C-000002", "passenger-7")] == [158, 477, 153]


def test_events_land_on_their_customers_partitions_in_order_and_a_retry_is_stored_once(nats_server: str) -> None:
    customers = [f"C-{n:03d}" for n in range(40)]
    events = [envelope(n, customers[n % len(customers)]) for n in range(600)]

    async def run() -> tuple[list[object], list[object], list[tuple[str, dict[str, object], str]]]:
        async with EventBroker(nats_server, partitions=8) as broker:
            first = await broker.publish(events)
            again = await broker.publish(events[:100])  # a retry after lost acknowledgements
        nc = await nats.connect(nats_server)
        js = nc.jetstream()
        info = await js.stream_info("AMENDS_EVENTS")
        assert info.state.messages == 600
        stored = []
        for seq in range(1, 601):
            message = await js.get_msg("AMENDS_EVENTS", seq)
            stored.append((message.subject, orjson.loads(message.data), message.headers["Nats-Msg-Id"]))
        await nc.close()
        return first, again, stored

    first, again, stored = asyncio.run(run())
    assert [p.duplicate for p in first] == [False] * 600  # type: ignore[attr-defined]
    assert [p.duplicate for p in again] == [True] * 100  # type: ignore[attr-defined]
    assert [p.seq for p in again] == [p.seq for p in first[:100]]  # type: ignore[attr-defined]
    for subject, body, msg_id in stored:
        assert subject == subject_of(partition_of(str(body["subject"]), 8))
        assert msg_id == dedup_key(str(body["source"]), str(body["id"]))
    # Each customer's events are in the stream in the order they were published.
    for customer in customers:
        mine = [int(body["data"]["n"]) for _, body, _ in stored if body["subject"] == customer]  # type: ignore[index]
        assert mine == sorted(mine)
        assert len(mine) == 15


def test_an_unreachable_broker_is_reported_as_unavailable() -> None:
    async def run() -> None:
        async with EventBroker("nats://127.0.0.1:1", partitions=4, connect_timeout=0.5):
            pass

    with pytest.raises(Unavailable, match=r"broker unavailable at nats://127\.0\.0\.1:1"):
        asyncio.run(run())


def test_a_stream_that_forgets_message_ids_too_soon_is_refused(nats_server: str) -> None:
    from nats.js.api import StreamConfig

    async def run() -> None:
        nc = await nats.connect(nats_server)
        await nc.jetstream().add_stream(StreamConfig(name="AMENDS_EVENTS", subjects=["amends.events.*"],
                                                     duplicate_window=5.0))  # fmt: skip
        await nc.close()
        async with EventBroker(nats_server, partitions=4):
            pass

    with pytest.raises(InvalidInput, match="remembers message ids for 5 s"):
        asyncio.run(run())


def test_two_streams_share_one_server_without_their_subjects_overlapping(nats_server: str) -> None:
    async def run() -> tuple[int, int]:
        async with (
            EventBroker(nats_server, partitions=4) as main,
            EventBroker(nats_server, partitions=4, stream="OTHER") as other,
        ):
            await main.publish([envelope(n, "C-1") for n in range(3)])
            await other.publish([envelope(n, "C-1") for n in range(5)])
            infos = [await broker._js.stream_info(broker.stream) for broker in (main, other)]
        return int(infos[0].state.messages), int(infos[1].state.messages)

    assert asyncio.run(run()) == (3, 5)
