"""Detection of one partition of the events stream, in broker mode (docs/scaling.md).

A worker that owns a partition takes its messages in stream order and stores each batch in one transaction: the
events (once per source and id, as in embedded mode), what the partition's own `Detector` found in them, its state,
and the partition's position in the stream (`broker_positions`). Only then does it acknowledge the messages. So a
worker killed at any point leaves a position that matches the stored events and state exactly, and the next owner
goes on from the message after it: a message stored but not acknowledged is taken again and found a duplicate; one
fetched but not stored is evaluated for the first time.

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

from amends.detect.rules import RuleSet
from amends.detect.runner import DetectClock, Detected, Detector
from amends.errors import InvalidInput
from amends.events import Event, validate_event
from amends.events.broker import Delivered, partition_of
from amends.events.ledger import append_rows, ledger_rows
from amends.store import Database, UnitOfWork, tables

__all__ = ["PartitionDetection", "Taken", "partition_cursor", "stream_latest"]

log = logging.getLogger(__name__)

_CURSOR_PREFIX = "partition."


def partition_cursor(partition: int, partitions: int) -> str:
    """The detector name (its cursor and state) of a partition: the count is part of it, so that partitions of
    another count never share state."""
    return f"{_CURSOR_PREFIX}{partition}/{partitions}"


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
        self.detector = Detector(
            rules,
            lateness=lateness,
            clock=clock,
            name=partition_cursor(partition, partitions),
            owns=lambda subject: partition_of(subject, partitions) == partition,
        )

    def position(self) -> int:
        """The stream sequence of the last message stored (0: none yet). Refuses a position taken under another
        partition count: the customers would be in other partitions than their stored state."""
        positions = tables.broker_positions
        with self.db.unit_of_work() as uow:
            row = uow.execute(
                sa.select(positions.c.seq, positions.c.partitions).where(
                    positions.c.stream == self.stream, positions.c.partition == self.partition
                )
            ).one_or_none()
        if row is None:
            return 0
        if row.partitions != self.partitions:
            raise InvalidInput(
                "broker_partitions",
                f"the stream {self.stream!r} was taken in {row.partitions} partitions, not {self.partitions}; "
                "changing the count needs a new stream (docs/scaling.md)",
            )
        return int(row.seq)

    def take(self, messages: Sequence[Delivered]) -> Taken:
        """Store a batch of the partition's messages, in stream order, with what detection found in them and the
        new position, in one transaction."""
        if not messages:
            return Taken()
        valid: list[Event] = []
        invalid = 0
        for message in messages:
            outcome = validate_event(message.body)
            if isinstance(outcome, Event) and partition_of(outcome.subject, self.partitions) == self.partition:
                valid.append(outcome)
            else:
                invalid += 1
                reason = f"{outcome.field}: {outcome.reason}" if not isinstance(outcome, Event) else "wrong partition"
                log.warning("partition %d: message %d is no event of it, passed over (%s)",
                            self.partition, message.seq, reason)  # fmt: skip
        received_at = messages[-1].stored_at.astimezone(UTC)
        rows = ledger_rows(valid, dialect=self.db.dialect, received_at=received_at) if valid else None
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
        now = datetime.now(UTC)
        uow.upsert(
            "broker_positions",
            ("stream", "partition", "partitions", "seq", "updated_at"),
            [(self.stream, self.partition, self.partitions, seq, now)],
            key=("stream", "partition"),
        )


def stream_latest(db: Database, partitions: int) -> datetime | None:
    """The latest event time any partition (of this count) has taken, or None."""
    cursors = tables.detect_cursors
    with db.unit_of_work() as uow:
        latest = uow.execute(
            sa.select(sa.func.max(cursors.c.latest)).where(cursors.c.name.like(f"{_CURSOR_PREFIX}%/{partitions}"))
        ).scalar_one()
    return latest if latest is None else latest.astimezone(UTC)
