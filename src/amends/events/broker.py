"""Broker mode (issue 11, in progress; docs/architecture.md): events go through a NATS JetStream stream, and workers
take them from there.

The stream holds one subject per partition of customers, `amends.events.<p>`, where p is a stable hash of the
event's subject (the customer) modulo the partition count: one customer's events always land in one partition, in
the order they were published, so one worker at a time can own a partition and evaluate it as the embedded
process evaluates everything. The hash is BLAKE2b, never Python's `hash()`, which differs between processes.

Every message carries `Nats-Msg-Id`, the event's ledger key (a digest of its `source` and `id`, events.ledger):
JetStream drops a second message with the same id within the stream's duplicate window, so a publish retried after
a lost acknowledgement stores the event once. An event counts as accepted only once JetStream has acknowledged it
(`publish` returns the acknowledgements; it raises if any is missing).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nats
import orjson
from nats.errors import Error as NatsError
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from amends.errors import InvalidInput, Unavailable
from amends.events.ledger import dedup_key

__all__ = ["SUBJECT_PREFIX", "EventBroker", "Published", "partition_of", "subject_of"]

SUBJECT_PREFIX = "amends.events"
DEFAULT_STREAM = "AMENDS_EVENTS"
DEFAULT_DUPLICATE_WINDOW = timedelta(hours=2)  # how long JetStream remembers a message id
_PUBLISH_TIMEOUT = 10.0  # seconds to wait for one acknowledgement
_IN_FLIGHT = 256  # publishes awaiting their acknowledgement at once


def partition_of(customer: str, partitions: int) -> int:
    """The partition of a customer: the same in every process, for as long as the partition count stays."""
    if partitions < 1:
        raise InvalidInput("partitions", f"at least 1, not {partitions}")
    digest = hashlib.blake2b(customer.encode(), digest_size=8).digest()
    return int.from_bytes(digest) % partitions


def subject_of(partition: int) -> str:
    return f"{SUBJECT_PREFIX}.{partition}"


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
        connect_timeout: float = 5.0,
    ) -> None:
        if partitions < 1:
            raise InvalidInput("partitions", f"at least 1, not {partitions}")
        self.url = url
        self.partitions = partitions
        self.stream = stream
        self.duplicate_window = duplicate_window
        self.connect_timeout = connect_timeout
        self._nc: Any = None
        self._js: Any = None

    async def __aenter__(self) -> EventBroker:
        await self.connect()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and make sure the stream exists with this partitioning (created on first use)."""
        failures: list[BaseException] = []

        async def failed(exc: BaseException) -> None:  # nats-py's default prints to stderr; the error is raised here
            failures.append(exc)

        try:  # one attempt (max_reconnect_attempts counts them; 0 would retry the first connect for ever)
            self._nc = await nats.connect(
                self.url, connect_timeout=self.connect_timeout, allow_reconnect=False, max_reconnect_attempts=1,
                error_cb=failed,
            )  # fmt: skip
        except (OSError, NatsError, TimeoutError) as exc:
            reason = failures[-1] if failures else exc
            raise Unavailable(f"broker unavailable at {self.url}: {reason or type(reason).__name__}") from exc
        self._js = self._nc.jetstream()
        try:
            await self._ensure_stream()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = self._js = None

    async def _ensure_stream(self) -> None:
        wanted = [f"{SUBJECT_PREFIX}.*"]
        try:
            info = await self._js.stream_info(self.stream)
        except NotFoundError:
            config = StreamConfig(
                name=self.stream,
                subjects=wanted,
                storage=StorageType.FILE,
                duplicate_window=self.duplicate_window.total_seconds(),
            )
            try:
                await self._js.add_stream(config)
            except (NatsError, TimeoutError) as exc:
                raise Unavailable(f"broker at {self.url} did not create the stream {self.stream!r}: {exc}") from exc
            return
        except (NatsError, TimeoutError) as exc:
            raise Unavailable(f"broker unavailable at {self.url}: JetStream did not answer ({exc})") from exc
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
        out: list[Published] = []
        for start in range(0, len(envelopes), _IN_FLIGHT):
            batch = envelopes[start : start + _IN_FLIGHT]
            partitions = [partition_of(str(e["subject"]), self.partitions) for e in batch]
            pending = [
                self._js.publish(
                    subject_of(p),
                    orjson.dumps(e),
                    timeout=_PUBLISH_TIMEOUT,
                    stream=self.stream,
                    headers={"Nats-Msg-Id": dedup_key(str(e["source"]), str(e["id"]))},
                )
                for e, p in zip(batch, partitions, strict=True)
            ]
            # Messages of one partition keep their order on one connection: NATS delivers a connection's
            # publishes in the order they were sent, and each waits for its own acknowledgement.
            acks = await asyncio.gather(*pending, return_exceptions=True)
            for p, ack in zip(partitions, acks, strict=True):
                if isinstance(ack, BaseException):
                    raise Unavailable(f"broker did not acknowledge an event: {ack or type(ack).__name__}") from ack
                out.append(Published(p, int(ack.seq), bool(ack.duplicate)))
        return out
