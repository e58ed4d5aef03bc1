"""Broker mode's worker process (docs/scaling.md): `amends worker` with a broker URL.

Any number of workers share the partitions of the events stream. Who owns a partition is decided by PostgreSQL:
a worker owns partition p while it holds the session advisory lock (stream, p) on a connection of its own, and
PostgreSQL lets one session hold it at a time. A worker killed, or cut off from the database, loses its session and
with it every lock at once; the others see the partitions free at their next look (every second) and take them.
Each worker also holds a shared "present" lock, so that every worker can count the workers alive and take its
share, ceil(P / workers): a worker that joins takes partitions as soon as the others give up the ones above their
share.

A partition, once owned, is taken from the stream in order and stored batch by batch (detect/partitioned.py); its
detector's deadlines are swept every `detect_sweep_seconds`. Beside the partitions, the worker runs the background
work every process runs (background.py): case intake, asking for feedback, alerts, the risk watch and delivery,
which claim their rows so that any number of workers share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from amends.background import Background
from amends.config import Settings
from amends.detect.partitioned import LostPartition, PartitionDetection, stream_latest
from amends.detect.service import Detection
from amends.errors import AmendsError, InvalidInput, Unavailable
from amends.events.broker import EventBroker, PartitionFeed
from amends.store import Database
from amends.store.database import translate_errors

__all__ = ["BrokerWorker", "PartitionLocks", "PartitionState"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_LAG_SECONDS = 5.0  # how often a partition's consumer lag is read from JetStream
_CUT_OFF_SECONDS = 15.0  # without the broker this long, a worker gives its partitions to those that reach it


def _lock_space(kind: str, stream: str) -> int:
    """A 31-bit key space of advisory locks (two-key form: space, partition), one per stream and kind."""
    return int.from_bytes(hashlib.blake2b(f"amends.{kind}.{stream}".encode(), digest_size=4).digest()) & 0x7FFFFFFF


class PartitionLocks:
    """Which partitions this process owns: PostgreSQL session advisory locks held on one connection of its own.
    A worker is `present` (counted by the others); an observer (a test, an operator's tool) only looks. Calls from
    several threads take turns on the one connection."""

    def __init__(self, db: Database, *, stream: str, present: bool = True) -> None:
        self.db = db
        self.present = present
        self._owned_space = _lock_space("partition", stream)
        self._present_space = _lock_space("worker", stream)
        self._connection: sa.Connection | None = None
        self._turn = threading.RLock()

    def _session(self) -> sa.Connection:
        if self._connection is None:
            with translate_errors():
                connection = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                try:
                    if self.present:
                        connection.execute(sa.select(sa.func.pg_advisory_lock_shared(self._present_space, 0)))
                except BaseException:
                    connection.invalidate()
                    connection.close()
                    raise
            self._connection = connection
        return self._connection

    def _query(self, statement: sa.Executable, parameters: Any = None) -> Any:
        with self._turn:
            try:
                with translate_errors():
                    return self._session().execute(statement, parameters)
            except AmendsError:
                self.close()  # the session is gone, and every lock with it
                raise

    def live_workers(self) -> int:
        """How many workers hold their "present" lock (this one included)."""
        return int(self._query(_HOLDERS, {"space": self._present_space, "objid": 0}).scalar_one())

    def taken(self) -> set[int]:
        """The partitions some worker (this one included) holds now."""
        rows = self._query(_HELD, {"space": self._owned_space})
        return {int(row[0]) for row in rows}

    def try_take(self, partition: int) -> bool:
        statement = sa.select(sa.func.pg_try_advisory_lock(self._owned_space, partition))
        return bool(self._query(statement).scalar_one())

    def release(self, partition: int) -> None:
        self._query(sa.select(sa.func.pg_advisory_unlock(self._owned_space, partition)))

    def holds(self, partition: int) -> bool:
        """Whether this session holds the partition's lock now (False once the session is gone)."""
        with self._turn:
            if self._connection is None:
                return False
            return bool(self._query(_MINE, {"space": self._owned_space, "objid": partition}).scalar_one())

    @property
    def open(self) -> bool:
        return self._connection is not None

    def close(self) -> None:
        """End the session: every lock it held is released."""
        with self._turn:
            if self._connection is not None:
                connection, self._connection = self._connection, None
                try:
                    connection.invalidate()  # never back to the pool with locks held
                    connection.close()
                except Exception:
                    log.debug("closing the lock session failed", exc_info=True)


# Advisory locks in the two-key form show in pg_locks with objsubid 2: classid the first key, objid the second.
_HOLDERS = sa.text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = CAST(:space AS oid) AND objid = CAST(:objid AS oid)"
)
_MINE = sa.text(
    "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
    "AND pid = pg_backend_pid() AND classid = CAST(:space AS oid) AND objid = CAST(:objid AS oid)"
)
_HELD = sa.text(
    "SELECT DISTINCT objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = CAST(:space AS oid)"
)


@dataclass
class PartitionState:
    """What a worker knows of a partition it owns, for /metrics and the logs."""

    partition: int
    taken_at: float = field(default_factory=time.monotonic)
    accepted: int = 0
    duplicates: int = 0
    invalid: int = 0
    lag: int | None = None  # messages not yet stored, as JetStream last said
    position: int = 0  # the stream sequence of the last message stored
    failing: str | None = None  # why the partition is not being taken, if it is not


class BrokerWorker:
    """The partitions this worker owns, and the background work it shares with every other process."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        detection: Detection,
        *,
        background: Background | None = None,
        rebalance_seconds: float = 1.0,
        fetch_timeout: float = 0.5,
    ) -> None:
        if settings.broker_url is None:
            raise InvalidInput("broker_url", "not set: without a broker, `amends worker` runs in embedded mode")
        self.db = db
        self.settings = settings
        self.detection = detection
        self.background = background
        self.partitions = settings.broker_partitions
        self.rebalance_seconds = rebalance_seconds
        self.fetch_timeout = fetch_timeout
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.owned: dict[int, PartitionState] = {}
        self.taken_total = {"accepted": 0, "duplicate": 0, "invalid": 0}  # since the process started
        self.database_ok = False
        self.workers_seen = 0
        self._locks = PartitionLocks(db, stream=settings.broker_stream)
        self._tasks: dict[int, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._fatal: BaseException | None = None
        self._broker: EventBroker | None = None

    @property
    def broker_connected(self) -> bool:
        return self._broker is not None and self._broker.connected

    @property
    def fatal(self) -> BaseException | None:
        """The error that stops the worker, if one did."""
        return self._fatal

    @property
    def ready(self) -> bool:
        """Connected to the broker and the database, with no error that stops it."""
        return self.broker_connected and self.database_ok and self._fatal is None

    async def run(self, stop: asyncio.Event) -> None:
        """Own partitions and take their events until `stop` is set; the background work runs on its own thread.
        Raises the first error no retry can cure (a partition count that does not match the stored positions)."""
        settings = self.settings
        broker = EventBroker(
            str(settings.broker_url),
            partitions=self.partitions,
            stream=settings.broker_stream,
            retention=settings.broker_retention,
            reconnect=True,
        )
        self._broker = broker
        if self.background is not None:
            self.background.start()
        cut_off_since: float | None = None
        try:
            while not stop.is_set() and self._fatal is None:
                try:  # once connected, the client reconnects on its own; a connection that closed is made again
                    await broker.ensure_connected()
                except Unavailable as exc:
                    log.warning("worker %s: %s; trying again", self.name, exc)
                if broker.connected:
                    cut_off_since = None
                    await self._rebalance()
                else:
                    cut_off_since = cut_off_since or time.monotonic()
                    if self._tasks and time.monotonic() - cut_off_since > _CUT_OFF_SECONDS:
                        # Workers that still reach the broker should take these partitions meanwhile.
                        log.warning("worker %s: no broker for %.0f s; giving up %d partition(s)", self.name,
                                    time.monotonic() - cut_off_since, len(self._tasks))  # fmt: skip
                        await self._give_up_all()
                        self._locks.close()
                await _wait(stop, self.rebalance_seconds)
        finally:
            try:
                await self._give_up_all()
            finally:
                self._locks.close()
                if self.background is not None:
                    self.background.stop()
                await broker.close()
        if self._fatal is not None:
            raise self._fatal

    # --- ownership -----------------------------------------------------------------------------------------

    async def _rebalance(self) -> None:
        """Count the workers, give up partitions above this worker's share, take free ones below it."""
        try:
            for partition, (task, _) in list(self._tasks.items()):
                if task.done():  # it lost the partition, or met an error no retry cures (logged there)
                    self._tasks.pop(partition)
                    self.owned.pop(partition, None)
                    if not task.cancelled() and task.exception() is not None:
                        log.error("worker %s: partition %d stopped", self.name, partition, exc_info=task.exception())
                    await self._db(self._locks.release, partition)
            workers = await self._db(self._locks.live_workers)
            share = math.ceil(self.partitions / max(workers, 1))
            self.workers_seen = workers
            if len(self._tasks) > share:
                extra = sorted(self._tasks, reverse=True)[: len(self._tasks) - share]
                await self._give_up(*extra)
                for partition in extra:
                    await self._db(self._locks.release, partition)
                    log.info("worker %s: gave up partition %d (%d workers now)", self.name, partition, workers)
            elif len(self._tasks) < share:
                taken = await self._db(self._locks.taken)
                offset = int.from_bytes(hashlib.blake2b(self.name.encode(), digest_size=4).digest()) % self.partitions
                for step in range(self.partitions):
                    if len(self._tasks) >= share:
                        break
                    partition = (offset + step) % self.partitions
                    if partition in taken or partition in self._tasks:
                        continue
                    if await self._db(self._locks.try_take, partition):
                        self._start(partition)
            self.database_ok = True
        except AmendsError as exc:
            # Without its lock session a worker owns nothing: stop at once, before another takes over.
            self.database_ok = False
            if self._tasks:
                log.warning("worker %s: lost the database (%s); giving up %d partition(s)", self.name, exc,
                            len(self._tasks))  # fmt: skip
            else:
                log.warning("worker %s: database unavailable (%s); trying again", self.name, exc)
            await self._give_up_all()
            self._locks.close()

    def _start(self, partition: int) -> None:
        stopping = asyncio.Event()
        self.owned[partition] = PartitionState(partition)
        task = asyncio.create_task(self._own(partition, stopping), name=f"partition-{partition}")
        self._tasks[partition] = (task, stopping)
        log.info("worker %s: took partition %d", self.name, partition)

    async def _give_up(self, *partitions: int) -> None:
        """Stop taking partitions, all at once: the batch in hand is stored (or not) before this returns."""
        stopping = [self._tasks.pop(partition) for partition in partitions]
        for _, event in stopping:
            event.set()
        for partition, (task, _) in zip(partitions, stopping, strict=True):
            try:
                await task
            except Exception:
                log.exception("worker %s: partition %d stopped with an error", self.name, partition)
            self.owned.pop(partition, None)

    async def _give_up_all(self) -> None:
        await self._give_up(*self._tasks)

    # --- one partition -------------------------------------------------------------------------------------

    async def _own(self, partition: int, stopping: asyncio.Event) -> None:
        settings = self.settings
        state = self.owned[partition]
        try:
            part = PartitionDetection(
                self.db,
                self.detection.rules,
                stream=settings.broker_stream,
                partition=partition,
                partitions=self.partitions,
                lateness=settings.detect_allowed_lateness,
                clock=settings.detect_clock,
            )
        except InvalidInput as exc:
            self._fatal = exc
            return
        broker = self._broker
        assert broker is not None
        while not stopping.is_set():
            try:
                # Each (re)start of the partition is a new taking: only while this session still holds its lock.
                if not await self._db(self._locks.holds, partition):
                    log.warning("worker %s: partition %d: its lock is no longer held here; stopping", self.name,
                                partition)  # fmt: skip
                    return
                await broker.ensure_connected()
                state.position = await self._db(part.claim, broker.stream_created)
                assert part.epoch is not None
                feed = await broker.feed(partition, after=state.position, epoch=part.epoch)
                state.failing = None
                try:
                    await self._take(part, feed, state, stopping)
                finally:
                    await feed.close()
            except LostPartition as exc:
                log.warning("worker %s: %s; stopping it here", self.name, exc)
                return
            except InvalidInput as exc:  # no retry cures it
                log.error("worker %s: partition %d: %s", self.name, partition, exc)
                self._fatal = exc
                return
            except AmendsError as exc:
                state.failing = str(exc)
                log.warning("worker %s: partition %d: %s; trying again", self.name, partition, exc)
                await _wait(stopping, 1.0)
            except Exception as exc:  # a bug: logged with its traceback, the partition kept, tried again a bit later
                state.failing = f"{type(exc).__name__}: {exc}"
                log.exception("worker %s: partition %d failed; trying again in 5 s", self.name, partition)
                await _wait(stopping, 5.0)

    async def _take(
        self, part: PartitionDetection, feed: PartitionFeed, state: PartitionState, stop: asyncio.Event
    ) -> None:
        settings = self.settings
        batch, events_clock = settings.broker_batch, settings.detect_clock == "events"
        last_sweep = last_lag = -math.inf
        while not stop.is_set():
            if part.detector.rules is not self.detection.rules:
                part.detector.use_rules(self.detection.rules)
            sweep_due = time.monotonic() - last_sweep >= settings.detect_sweep_seconds
            # Read before the fetch: an event any partition stored by then was in the stream before the fetch, so
            # a fetch that comes back short has taken every message of this partition published before it.
            latest: datetime | None = None
            if sweep_due and events_clock:
                latest = await self._db(stream_latest, self.db, self.partitions)
            messages = await feed.fetch(batch, timeout=self.fetch_timeout)
            # Caught up: nothing came, or the last message said none of the partition's was still to come.
            caught_up = not messages or messages[-1].pending == 0
            if messages:
                taken = await self._db(part.take, messages)
                await feed.acknowledge()
                state.accepted += taken.accepted
                state.duplicates += taken.duplicates
                state.invalid += taken.invalid
                self.taken_total["accepted"] += taken.accepted
                self.taken_total["duplicate"] += taken.duplicates
                self.taken_total["invalid"] += taken.invalid
                state.position = messages[-1].seq
            if sweep_due:
                await self._db(part.sweep, until=latest if caught_up else None)
                last_sweep = time.monotonic()
            if time.monotonic() - last_lag >= _LAG_SECONDS:
                state.lag = await feed.lag()
                last_lag = time.monotonic()

    async def _db(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Database work off the event loop (the loop keeps the broker's connection alive meanwhile)."""
        return await asyncio.to_thread(function, *args, **kwargs)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
