"""Broker mode (docs/scaling.md): events go through a NATS JetStream stream, and workers take them from there.

The stream holds one subject per partition of customers, `amends.events.<p>`, where p is a stable hash of the
event's subject (the customer) modulo the partition count: one customer's events always land in one partition, in
the order they were published, so one worker at a time can own a partition and evaluate it as the embedded
process evaluates everything. The hash is BLAKE2b, never Python's `hash()`, which differs between processes.

Every message carries `Nats-Msg-Id`, the event's ledger key (a digest of its `source` and `id`, events.ledger):
JetStream drops a second message with the same id within the stream's duplicate window, so a publish retried after
a lost acknowledgement stores the event once. An event counts as accepted only once JetStream has acknowledged it
(`publish` returns the acknowledgements; it raises if any is missing).

A worker takes a partition's messages through a durable pull consumer (`feed`), made afresh by each new owner at
the message after the last one stored (the position the worker keeps in PostgreSQL with the events), so that a
takeover neither waits for the dead owner's unacknowledged messages to time out nor depends on its acknowledgements.
The consumer acknowledges cumulatively: acknowledging a message acknowledges every one before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import orjson
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from amends.errors import InvalidInput, Unavailable
from amends.events.envelope import Event
from amends.events.ledger import Appended, dedup_key

__all__ = [
    "SUBJECT_PREFIX",
    "BrokerSink",
    "Delivered",
    "EventBroker",
    "PartitionFeed",
    "Published",
    "partition_of",
    "subject_of",
]

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "amends.events"
DEFAULT_STREAM = "AMENDS_EVENTS"
DEFAULT_DUPLICATE_WINDOW = timedelta(hours=2)  # how long JetStream remembers a message id
DEFAULT_RETENTION = timedelta(days=7)  # how long the stream keeps a message: longer than any worker outage
_PUBLISH_TIMEOUT = 10.0  # seconds to wait for one acknowledgement
_CONNECT_BACKOFF = 2.0  # seconds after a failed connect in which callers fail at once instead of trying again
_DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default, until a connection says otherwise
_PARTITIONS_KEY = "amends_partitions"  # the stream's metadata: the partition count its publishers use


def _created(info: Any) -> str:
    created = getattr(info, "created", None)
    return "" if created is None else str(created)


_IN_FLIGHT = 256  # publishes awaiting their acknowledgement at once


def partition_of(customer: str, partitions: int) -> int:
    """The partition of a customer: the same in every process, for as long as the partition count stays."""
    if partitions < 1:
        raise InvalidInput("partitions", f"at least 1, not {partitions}")
    digest = hashlib.blake2b(customer.encode(), digest_size=8).digest()
    return int.from_bytes(digest) % partitions


def subject_of(partition: int, stream: str = DEFAULT_STREAM) -> str:
    """The subject of a partition: `amends.events.<p>` on the default stream, `amends.events.<stream>.<p>` on another,
    so that several streams (two deployments, a benchmark) share one NATS without their subjects overlapping."""
    return f"{_prefix(stream)}.{partition}"


def _prefix(stream: str) -> str:
    return SUBJECT_PREFIX if stream == DEFAULT_STREAM else f"{SUBJECT_PREFIX}.{stream}"


def consumer_name(partition: int, partitions: int, epoch: int | None) -> str:
    """The durable consumer of one taking of a partition (without `epoch`: the prefix all its takings share)."""
    return f"amends-{partition}-of-{partitions}-e" + ("" if epoch is None else str(epoch))


@dataclass(frozen=True, slots=True)
class Delivered:
    """A message of a partition as a worker takes it: its stream sequence, its body (JSON, not yet validated), when
    JetStream stored it (the moment the event was accepted), and how many of the partition's messages were still
    to come after it when it was delivered."""

    seq: int
    body: Any
    stored_at: datetime
    pending: int = 0


@dataclass(frozen=True, slots=True)
class Published:
    """JetStream's acknowledgement of one event: where it is in the stream, and whether it was there already."""

    partition: int
    seq: int
    duplicate: bool


class EventBroker:
    """A connection to NATS and the events stream. Use as `async with EventBroker(url, partitions=P) as broker`."""

    def __init__(
        self,
        url: str,
        *,
        partitions: int,
        stream: str = DEFAULT_STREAM,
        duplicate_window: timedelta = DEFAULT_DUPLICATE_WINDOW,
        retention: timedelta = DEFAULT_RETENTION,
        connect_timeout: float = 5.0,
        reconnect: bool = False,
    ) -> None:
        if partitions < 1:
            raise InvalidInput("partitions", f"at least 1, not {partitions}")
        self.url = url
        self.partitions = partitions
        self.stream = stream
        self.duplicate_window = duplicate_window
        self.retention = retention
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect  # a long-lived connection (a server, a worker) reconnects on its own
        self._nc: Any = None
        self._js: Any = None
        self._connecting: asyncio.Lock | None = None
        self._failed_at: float | None = None  # when the last connect failed (a caller within the backoff fails fast)
        self._failure = ""
        self.stream_created = ""  # when the stream was made (a stream made anew starts its sequence again)

    @property
    def shown_url(self) -> str:
        """The URL without the user and password it may carry (for messages and logs)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        return urlunsplit((parts.scheme, f"{host}:{parts.port}" if parts.port else host, parts.path, "", ""))

    @property
    def max_payload(self) -> int:
        """The largest message the server takes, in bytes (1 MiB by default)."""
        return int(self._nc.max_payload) if self._nc is not None else _DEFAULT_MAX_PAYLOAD

    async def __aenter__(self) -> EventBroker:
        await self.connect()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and make sure the stream exists with this partitioning (created on first use)."""
        failures: list[BaseException] = []
        connecting = True

        async def failed(exc: BaseException) -> None:
            # nats-py's default prints to stderr. While connecting, the error is raised from here; later ones (each
            # reconnect attempt) are logged, never kept.
            if connecting:
                failures.append(exc)
            else:
                log.warning("broker at %s: %s", self.shown_url, exc or type(exc).__name__)

        try:  # one attempt: without allow_reconnect, nats-py gives up at the first failure
            self._nc = await nats.connect(
                self.url, connect_timeout=self.connect_timeout, allow_reconnect=False, max_reconnect_attempts=1,
                reconnect_time_wait=0.5, error_cb=failed,
            )  # fmt: skip
        except (OSError, NatsError, TimeoutError) as exc:
            reason = failures[-1] if failures else exc
            raise Unavailable(f"broker unavailable at {self.shown_url}: {reason or type(reason).__name__}") from exc
        finally:
            connecting = False
        if self.reconnect:
            # Connected once: from now on the client reconnects on its own, for as long as it takes, keeping the
            # subscriptions (nats-py reads these options when the connection drops).
            self._nc.options["allow_reconnect"] = True
            self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream()
        try:
            await self._ensure_stream()
        except BaseException:
            await self.close()
            raise

    async def ensure_connected(self) -> None:
        """Connect unless connected (a server connects on its first publish, so that it starts without the broker;
        a connection that closed is made again)."""
        if self._nc is not None and self._nc.is_closed:
            self._nc = self._js = None
        if self._js is not None:
            return
        if self._failed_at is not None and time.monotonic() - self._failed_at < _CONNECT_BACKOFF:
            raise Unavailable(self._failure)  # tried a moment ago: callers do not queue up behind attempts
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._js is None:
                try:
                    await self.connect()
                except Unavailable as exc:
                    self._failed_at, self._failure = time.monotonic(), str(exc)
                    raise
                self._failed_at = None

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = self._js = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    async def _ensure_stream(self) -> None:
        wanted = [f"{_prefix(self.stream)}.*"]
        try:
            info = await self._js.stream_info(self.stream)
        except NotFoundError:
            config = StreamConfig(
                name=self.stream,
                subjects=wanted,
                storage=StorageType.FILE,
                duplicate_window=self.duplicate_window.total_seconds(),
                max_age=self.retention.total_seconds(),
                metadata={_PARTITIONS_KEY: str(self.partitions)},
            )
            try:
                info = await self._js.add_stream(config)
            except (NatsError, TimeoutError) as exc:
                raise Unavailable(
                    f"broker at {self.shown_url} did not create the stream {self.stream!r}: {exc}"
                ) from exc
            self.stream_created = _created(info)
            return
        except (NatsError, TimeoutError) as exc:
            raise Unavailable(f"broker unavailable at {self.shown_url}: JetStream did not answer ({exc})") from exc
        self.stream_created = _created(info)
        partitions = (info.config.metadata or {}).get(_PARTITIONS_KEY)
        if partitions is not None and partitions != str(self.partitions):
            # A publisher with another count would put customers on partitions the workers do not read as theirs.
            raise InvalidInput(
                "broker_partitions", f"stream {self.stream!r} is partitioned {partitions} ways, not {self.partitions}"
            )
        if abs((info.config.max_age or 0.0) - self.retention.total_seconds()) > 1:
            log.warning("stream %r keeps messages for %g s, not broker_retention's %g s: the stream's own setting "
                        "holds (change it with the nats CLI)", self.stream, info.config.max_age or 0.0,
                        self.retention.total_seconds())  # fmt: skip
        if list(info.config.subjects or []) != wanted:
            raise InvalidInput("broker_stream", f"stream {self.stream!r} exists with subjects {info.config.subjects}")
        window = info.config.duplicate_window or 0.0
        if window < self.duplicate_window.total_seconds():
            raise InvalidInput(
                "broker_stream",
                f"stream {self.stream!r} remembers message ids for {window:g} s, less than the "
                f"{self.duplicate_window.total_seconds():g} s a retried publish relies on",
            )

    async def publish(self, envelopes: Sequence[Mapping[str, Any]]) -> list[Published]:
        """Publish events (CloudEvents envelopes already validated) to their customers' partitions, in order per
        partition; their acknowledgements, in the order given. Raises Unavailable if any is not acknowledged: the
        caller must not report the batch as accepted, and retries all of it. JetStream keeps the first copy of each
        id, so the events stored already keep their place; one that failed may then land after later events of its
        partition, which the evaluator's event-time order (within the allowed lateness) absorbs."""
        if self._js is None:
            raise Unavailable("broker not connected")
        if not self.connected:  # reconnecting: fail now rather than wait out every acknowledgement's timeout
            raise Unavailable(f"broker unavailable at {self.shown_url}: disconnected, reconnecting")
        bodies = [orjson.dumps(e) for e in envelopes]
        limit = self.max_payload
        for envelope, body in zip(envelopes, bodies, strict=True):
            if len(body) > limit:
                raise InvalidInput(
                    f"event {envelope.get('source')}/{envelope.get('id')}",
                    f"{len(body):,} bytes as JSON, more than the broker's message limit of {limit:,}",
                )
        out: list[Published] = []
        for start in range(0, len(envelopes), _IN_FLIGHT):
            batch = envelopes[start : start + _IN_FLIGHT]
            partitions = [partition_of(str(e["subject"]), self.partitions) for e in batch]
            pending = [
                self._js.publish(
                    subject_of(p, self.stream),
                    body,
                    timeout=_PUBLISH_TIMEOUT,
                    stream=self.stream,
                    headers={"Nats-Msg-Id": dedup_key(str(e["source"]), str(e["id"]))},
                )
                for e, p, body in zip(batch, partitions, bodies[start : start + _IN_FLIGHT], strict=True)
            ]
            # Messages of one partition keep their order on one connection: NATS delivers a connection's
            # publishes in the order they were sent, and each waits for its own acknowledgement.
            acks = await asyncio.gather(*pending, return_exceptions=True)
            for p, ack in zip(partitions, acks, strict=True):
                if isinstance(ack, BaseException):
                    raise Unavailable(f"broker did not acknowledge an event: {ack or type(ack).__name__}") from ack
                out.append(Published(p, int(ack.seq), bool(ack.duplicate)))
        return out

    async def feed(self, partition: int, *, after: int, epoch: int) -> PartitionFeed:
        """The messages of `partition` after stream sequence `after`, through a durable consumer of this taking
        (`epoch`) of the partition, made here; the consumers of earlier takings are deleted, so that a worker that
        lost the partition pulls nothing more."""
        if not 0 <= partition < self.partitions:
            raise InvalidInput("partition", f"between 0 and {self.partitions - 1}, not {partition}")
        await self.ensure_connected()
        name = consumer_name(partition, self.partitions, epoch)
        start = {"deliver_policy": DeliverPolicy.ALL} if after <= 0 else {
            "deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": after + 1
        }  # fmt: skip
        config = ConsumerConfig(
            durable_name=name,
            name=name,
            filter_subject=subject_of(partition, self.stream),
            ack_policy=AckPolicy.ALL,
            ack_wait=_ACK_WAIT,
            max_ack_pending=_MAX_ACK_PENDING,
            **start,
        )
        try:
            mine = consumer_name(partition, self.partitions, None)
            for info in await self._js.consumers_info(self.stream):
                if info.name.startswith(mine) and info.name != name:
                    with contextlib.suppress(NotFoundError):
                        await self._js.delete_consumer(self.stream, info.name)
            info = await self._js.stream_info(self.stream)
            if info.state.first_seq > after + 1 and info.state.messages:
                log.error("partition %d: the stream no longer holds messages %d to %d (older than its retention): "
                          "any of this partition's among them were never stored", partition, after + 1,
                          info.state.first_seq - 1)  # fmt: skip
            await self._js.add_consumer(self.stream, config=config)
            subscription = await self._js.pull_subscribe_bind(durable=name, stream=self.stream)
        except (NatsError, TimeoutError) as exc:
            raise Unavailable(f"broker did not open partition {partition}: {exc or type(exc).__name__}") from exc
        return PartitionFeed(self._js, self.stream, name, subscription)


_ACK_WAIT = 60.0  # seconds before JetStream offers an unacknowledged message again (only to this consumer's owner)
_MAX_ACK_PENDING = 100_000


class PartitionFeed:
    """One partition's messages, in stream order, for the worker that owns it."""

    def __init__(self, js: Any, stream: str, name: str, subscription: Any) -> None:
        self._js = js
        self.stream = stream
        self.name = name
        self._subscription = subscription
        self._last: Any = None  # the last message fetched and not yet acknowledged

    async def fetch(self, limit: int, *, timeout: float) -> list[Delivered]:
        """Up to `limit` messages: those ready now, else the first to come within `timeout` seconds; [] if none."""
        try:
            messages = await self._subscription.fetch(limit, timeout=timeout)
        except (TimeoutError, NatsTimeout):
            return []
        except NatsError as exc:
            raise Unavailable(f"broker did not deliver: {exc or type(exc).__name__}") from exc
        out: list[Delivered] = []
        for message in messages:
            metadata = message.metadata
            try:
                body = orjson.loads(message.data)
            except orjson.JSONDecodeError:
                body = None  # not an event: the worker rejects it with the others that fail validation
            out.append(Delivered(int(metadata.sequence.stream), body, metadata.timestamp, int(metadata.num_pending)))
            self._last = message
        return out

    async def acknowledge(self) -> None:
        """Acknowledge every message fetched so far (the consumer acknowledges cumulatively)."""
        if self._last is not None:
            try:
                await self._last.ack()
            except NatsError as exc:  # harmless: the next owner starts after the stored position, not the ack
                raise Unavailable(f"broker did not take an acknowledgement: {exc or type(exc).__name__}") from exc
            self._last = None

    async def lag(self) -> int:
        """Messages of the partition not yet acknowledged: still to deliver, or delivered and not yet stored."""
        try:
            info = await self._js.consumer_info(self.stream, self.name)
        except (NatsError, TimeoutError) as exc:
            raise Unavailable(f"broker did not describe {self.name}: {exc or type(exc).__name__}") from exc
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        with contextlib.suppress(NatsError, TimeoutError):
            await self._subscription.unsubscribe()


class BrokerSink:
    """Broker mode's way in for `amends ingest` (events.files.EventSink): each group of a file's events published, and
    counted once JetStream acknowledged all of it. A duplicate is an event JetStream still remembered (within its
    duplicate window); one sent again after that is found a duplicate by the worker that stores it, and counted
    accepted here. The broker's connection lives on an event loop of its own, on its own thread; use as a context
    manager."""

    def __init__(self, broker: EventBroker) -> None:
        self.broker = broker
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="amends-broker", daemon=True)

    def __enter__(self) -> BrokerSink:
        self._thread.start()
        try:
            self._run(self.broker.connect())
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self._run(self.broker.close())
        finally:
            self._stop()

    def prepare(self, events: list[Event]) -> list[dict[str, Any]]:
        return [event.envelope() for event in events]

    def store(self, prepared: list[dict[str, Any]]) -> Appended:
        acknowledged = self._run(self.broker.publish(prepared))
        duplicates = sum(1 for ack in acknowledged if ack.duplicate)
        return Appended(accepted=len(acknowledged) - duplicates, duplicates=duplicates)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
