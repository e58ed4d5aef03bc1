"""Detection of one partition of the events stream, in broker mode (docs/scaling.md).

A worker that owns a partition first `claim`s it: a new epoch of the partition, and the position to go on from.
Then it takes the messages in stream order and stores each batch in one transaction: the events (once per source
and id, as in embedded mode), what the partition's own `Detector` found in them, its state, and the partition's
position in the stream (`broker_positions`), written only if the epoch is still its own. Only then does it
acknowledge the messages. So a worker killed at any point leaves a position that matches the stored events and
state exactly, and the next owner goes on from the message after it: a message stored but not acknowledged is
taken again and found a duplicate; one fetched but not stored is evaluated for the first time. A worker that lost
the partition without knowing it (cut off from the database for a while) finds the epoch moved on at its next
batch, which rolls back (`LostPartition`).

The detector is the embedded one (detect/runner.py), restricted to the customers of the partition: it keeps its
state under its own name, `partition.<p>/<P>`, and never catches up from the ledger (other partitions' events are
not its own, and its own come from the stream). With the `events` clock each partition's time is its own latest
event, except that a partition that has taken every message published so far follows the latest event time of all
partitions, as the one embedded detector follows all events (`sweep`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from amends.detect.rules import RuleSet
from amends.detect.runner import DetectClock, Detected, Detector
from amends.errors import Conflict, InvalidInput
from amends.events import Event, validate_event
from amends.events.broker import Delivered, partition_of
from amends.events.ledger import append_rows, ledger_rows
from amends.store import Database, UnitOfWork, tables

__all__ = ["LostPartition", "PartitionDetection", "Taken", "partition_cursor", "stream_latest"]

log = logging.getLogger(__name__)

_CURSOR_PREFIX = "partition."


def partition_cursor(partition: int, partitions: int) -> str:
    """The detector name (its cursor and state) of a partition: the count is part of it, so that partitions of
    another count never share state."""
    return f"{_CURSOR_PREFIX}{partition}/{partitions}"


class LostPartition(Conflict):
    """Another worker has taken the partition since this one claimed it: the batch was not stored."""


@dataclass(frozen=True, slots=True)
class Taken:
    """What storing a batch of messages did: events stored for the first time, ones already stored, and messages
    that were no valid event (published by something other than amends; logged and passed over)."""

    accepted: int = 0
    duplicates: int = 0
    invalid: int = 0


class PartitionDetection:
    """The events and the detector of one partition of the stream `stream`."""

    def __init__(
        self,
        db: Database,
        rules: RuleSet,
        *,
        stream: str,
        partition: int,
        partitions: int,
        lateness: timedelta = timedelta(),
        clock: DetectClock = "wall",
    ) -> None:
        if db.dialect != "postgresql":
            raise InvalidInput("database_url", "broker mode keeps its shared state in PostgreSQL, not SQLite")
        self.db = db
        self.stream = stream
        self.partition = partition
        self.partitions = partitions
        self.epoch: int | None = None  # this taking of the partition, once claimed
        self.detector = Detector(
            rules,
            lateness=lateness,
            clock=clock,
            name=partition_cursor(partition, partitions),
            owns=lambda subject: partition_of(subject, partitions) == partition,
        )

    def claim(self, stream_created: str) -> int:
        """Take the partition: a new epoch, after which no earlier taking can store a batch; the stream sequence of
        the last message stored (0: none yet). Refuses a position taken under another partition count (the
        customers would be in other partitions than their stored state) or from a stream made anew since (its
        sequence started again)."""
        positions = tables.broker_positions
        mine = (positions.c.stream == self.stream, positions.c.partition == self.partition)
        now = datetime.now(UTC)
        with self.db.unit_of_work(writes=True) as uow:
            uow.execute(
                pg_insert(positions)
                .values(stream=self.stream, partition=self.partition, partitions=self.partitions,
                        stream_created=stream_created, epoch=0, seq=0, updated_at=now)
                .on_conflict_do_nothing()
            )  # fmt: skip
            row = uow.execute(sa.select(positions).where(*mine).with_for_update()).one()
            if row.partitions != self.partitions:
                raise InvalidInput(
                    "broker_partitions",
                    f"the stream {self.stream!r} was taken in {row.partitions} partitions, not {self.partitions}; "
                    "changing the count needs a new stream (docs/scaling.md)",
                )
            if row.stream_created not in ("", stream_created) and row.seq:
                raise InvalidInput(
                    "broker_stream",
                    f"the stream {self.stream!r} was made anew (at {stream_created}; the stored positions are of the "
                    f"one made at {row.stream_created}), so its sequence started again. Once its old messages are "
                    "known to be stored or gone, delete the stream's rows of broker_positions (docs/scaling.md)",
                )
            epoch = int(row.epoch) + 1
            uow.execute(
                positions.update().where(*mine).values(epoch=epoch, stream_created=stream_created, updated_at=now)
            )
            uow.commit()
        self.epoch = epoch
        return int(row.seq)

    def take(self, messages: Sequence[Delivered]) -> Taken:
        """Store a batch of the partition's messages, in stream order, with what detection found in them and the
        new position, in one transaction."""
        if not messages:
            return Taken()
        if self.epoch is None:
            raise LostPartition(f"partition {self.partition} is not claimed")
        valid: list[Event] = []
        invalid = 0
        for message in messages:
            outcome = validate_event(message.body)
            if not isinstance(outcome, Event):
                invalid += 1  # no amends publisher sends it (they validate first): logged, counted, passed over
                log.warning("partition %d: message %d is no event, passed over (%s: %s)",
                            self.partition, message.seq, outcome.field, outcome.reason)  # fmt: skip
            elif partition_of(outcome.subject, self.partitions) != self.partition:
                # Its customer's events are evaluated elsewhere; passing it over would lose it. Stop, loudly.
                raise InvalidInput(
                    "broker_partitions",
                    f"message {message.seq} of partition {self.partition} is about customer {outcome.subject!r}, "
                    f"whose partition of {self.partitions} is {partition_of(outcome.subject, self.partitions)}: "
                    "a publisher uses another partition count",
                )
            else:
                valid.append(outcome)
        # The time of storing, not of publishing: asking for feedback and the risk watch take an event as settled
        # once it was stored a minute ago (detect/risk/watch.py), which a lagging worker's old timestamps would break.
        rows = ledger_rows(valid, dialect=self.db.dialect, received_at=datetime.now(UTC)) if valid else None
        with self.db.unit_of_work(writes=True) as uow:
            appended = append_rows(uow, rows, self.detector) if rows is not None else None
            self._record_position(uow, messages[-1].seq)
            uow.commit()
        if appended is None:
            return Taken(invalid=invalid)
        return Taken(appended.accepted, appended.duplicates, invalid)

    def sweep(self, *, until: datetime | None = None) -> Detected:
        """Fire what fell due (see Detector.sweep; `until`: the stream's latest event time, for the events clock)."""
        return self.detector.sweep(self.db, until=until)

    def _record_position(self, uow: UnitOfWork, seq: int) -> None:
        """Move the position on, if this is still the partition's current epoch; else LostPartition (and the unit
        of work, not committed, rolls back the batch)."""
        positions = tables.broker_positions
        moved = uow.execute(
            positions.update()
            .where(positions.c.stream == self.stream, positions.c.partition == self.partition,
                   positions.c.epoch == self.epoch)
            .values(seq=seq, updated_at=datetime.now(UTC))
        )  # fmt: skip
        if moved.rowcount != 1:
            raise LostPartition(f"partition {self.partition} was taken by another worker (epoch {self.epoch} is over)")


def stream_latest(db: Database, partitions: int) -> datetime | None:
    """The latest event time any partition (of this count) has taken, or None."""
    cursors = tables.detect_cursors
    with db.unit_of_work() as uow:
        latest = uow.execute(
            sa.select(sa.func.max(cursors.c.latest)).where(cursors.c.name.like(f"{_CURSOR_PREFIX}%/{partitions}"))
        ).scalar_one()
    return latest if latest is None else latest.astimezone(UTC)
