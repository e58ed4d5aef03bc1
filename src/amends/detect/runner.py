"""Detection bound to the database: the streaming evaluator sees every event in the transaction that
stores it, and what it finds and remembers is written in that same transaction.

A `Detector` is a `LedgerWatcher` (events/ledger.py): ingestion hands it each transaction's new events.
Before any event is written it takes the detection lock (SQLite's write lock; a PostgreSQL advisory lock
held to the end of the transaction), so evaluations happen one at a time and in ledger order, in any number
of threads and processes. Then it makes sure its evaluator holds the stored state: the cursor row carries a
version token that every evaluation replaces, and an evaluator whose token differs (another process
evaluated since, or a transaction of ours was rolled back) is rebuilt from the stored entries, with the
events still waiting above the watermark read back from the ledger.

So nothing is evaluated twice or lost: incidents, state entries (the durable timers among them) and the
cursor commit or roll back with the events. A process killed at any point leaves the last committed
state, and the next evaluation (or `sweep`) goes on from there: a timer armed before the kill fires once
after it. Events stored while no detector watched (its cursor is behind the ledger) are caught up first.

Time: with the `wall` clock the watermark follows the wall clock minus the allowed lateness, and `sweep`
(run every second by `amends worker` and inside `amends serve`) fires the timers that fall due between
events. With the `events` clock it follows the latest event time instead: for loading history, and tests.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from amends.detect.incidents import Candidate, Finding, LateResolution
from amends.detect.rules import RuleSet
from amends.detect.streaming import Checkpoint, Evaluator, StateEntry
from amends.events import Recorded, last_seq, read_recorded
from amends.store import Database, UnitOfWork, bulk_values, tables

__all__ = ["DetectClock", "Detected", "Detector", "renew_detectors", "store_findings"]

log = logging.getLogger(__name__)

DetectClock = Literal["wall", "events"]

_CHUNK = 10_000  # events read back from the ledger per query
_INCIDENT_COLUMNS = (
    "rule_id",
    "key",
    "customer_id",
    "severity",
    "playbook",
    "status",
    "failure_at",
    "detected_at",
    "detected_by",
    "facts",
)
_STATE_COLUMNS = ("detector", "kind", "rule_id", "key", "due", "payload")
_STATE_KEY = ("detector", "kind", "rule_id", "key")


@dataclass(frozen=True, slots=True)
class Detected:
    """What storing a group of findings did: incidents opened, and open ones marked resolved late."""

    opened: int = 0
    resolved_late: int = 0

    def __add__(self, other: Detected) -> Detected:
        return Detected(self.opened + other.opened, self.resolved_late + other.resolved_late)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _lock_key(detector: str) -> int:
    key = int.from_bytes(hashlib.blake2b(f"amends.detect.{detector}".encode(), digest_size=8).digest())
    return key - (1 << 63)  # PostgreSQL's advisory lock keys are signed 64-bit


def renew_detectors(uow: UnitOfWork) -> int:
    """Make every detector, in every process, rebuild its evaluator from the stored state at its next transaction:
    for a change made to that state (or to the events it reads back) outside detection, such as an erasure. Takes
    each detector's lock as the detector does, so none is evaluating meanwhile and none can store what it held
    before, and gives every cursor a new version. Call it before the change, in the same unit of work; the locks
    are held to its end. Returns how many detectors there are."""
    cursors = tables.detect_cursors
    if uow.dialect == "postgresql":
        names = sorted(uow.execute(sa.select(cursors.c.name)).scalars())
        for name in names:  # in one order, so that two renewals never wait on each other
            uow.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(name))))
    # SQLite: this write takes the one write lock, which every detector takes first too.
    return uow.execute(cursors.update().values(version=secrets.randbits(62))).rowcount


class Detector:
    """The streaming evaluator of one rule set, its state kept in the database under the cursor `name`.

    In embedded mode one detector, `main`, sees every event. In broker mode (amends.worker) each partition of the
    stream has its own, which sees only the events of the customers it `owns` (their subjects): only the worker
    that owns the partition stores those events, and what it has not stored yet it takes again from the stream,
    so such a detector never catches up from the ledger."""

    def __init__(
        self,
        rules: RuleSet,
        *,
        lateness: timedelta = timedelta(),
        clock: DetectClock = "wall",
        now: Callable[[], datetime] = _utc_now,
        name: str = "main",
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.lateness = lateness
        self.clock = clock
        self.name = name
        self._owns = owns
        self.detected = Detected()  # by this detector, since it was made
        self._rules = rules
        self._now = now
        self._evaluator: Evaluator | None = None
        self._version: int | None = None  # the stored version the evaluator holds; None: unknown
        self._version_before: int | None = None  # the version when the evaluator was last taken to change
        self._cursor_seq = 0
        self._next_rules: RuleSet | None = None
        self._lock_key = _lock_key(name)

    @property
    def rules(self) -> RuleSet:
        """The rules evaluated from the next transaction on."""
        return self._next_rules if self._next_rules is not None else self._rules

    def use_rules(self, rules: RuleSet) -> None:
        """Evaluate with `rules` from the next transaction on; the stored state of rules that remain is
        kept, that of rules that are gone is dropped. Safe to call while another thread evaluates: the
        change is made under the detection lock, when the next transaction begins."""
        self._next_rules = rules

    # --- LedgerWatcher -----------------------------------------------------------------------------------

    def before_append(self, uow: UnitOfWork) -> None:
        """Take the detection lock and bring the evaluator up to the stored state and the ledger."""
        self._lock(uow)
        self._sync(uow)

    def appended(self, uow: UnitOfWork, recorded: Sequence[Recorded]) -> None:
        """Evaluate this transaction's new events and store what came of them."""
        evaluator = self._take()
        findings = evaluator.observe(
            [entry.event for entry in recorded],
            keys=[entry.key for entry in recorded],
            seqs=[entry.seq for entry in recorded],
        )
        if recorded:
            self._cursor_seq = max(self._cursor_seq, recorded[-1].seq)
        findings += self._advance(evaluator)
        self._store(uow, evaluator, findings, force=bool(recorded))

    def sweep(self, db: Database, *, until: datetime | None = None) -> Detected:
        """Move the watermark to the clock and store what that fires (deadlines passed with no event). With the
        events clock, `until` stands for the latest event time when it is later (a partition that has taken
        every event published so far may follow the stream's latest time, as the embedded detector does)."""
        before = self.detected
        with db.unit_of_work(writes=True) as uow:
            self.before_append(uow)
            evaluator = self._take()
            self._store(uow, evaluator, self._advance(evaluator, until=until), force=False)
            uow.commit()
        return Detected(self.detected.opened - before.opened, self.detected.resolved_late - before.resolved_late)

    # --- inside the transaction --------------------------------------------------------------------------

    def _lock(self, uow: UnitOfWork) -> None:
        if uow.dialect == "postgresql":
            uow.execute(sa.select(sa.func.pg_advisory_xact_lock(self._lock_key)))
        else:
            # Any write takes SQLite's one write lock, for the rest of the transaction; this one changes
            # nothing. It must come before the transaction reads, or its snapshot could be stale.
            cursors = tables.detect_cursors
            uow.execute(cursors.update().where(cursors.c.name == self.name).values(version=cursors.c.version))

    def _sync(self, uow: UnitOfWork) -> None:
        if self._next_rules is not None:
            self._rules, self._next_rules = self._next_rules, None
            self._evaluator, self._version = None, None  # rebuilt below from the stored state
        cursors = tables.detect_cursors
        row = uow.execute(sa.select(cursors).where(cursors.c.name == self.name)).one_or_none()
        if row is None:
            # A new detector starts at the end of the ledger: history stored before it is for backfill.
            self._evaluator = Evaluator(self._rules, lateness=self.lateness)
            self._cursor_seq = last_seq(uow)
            self._version = None
            return
        if self._evaluator is None or self._version != row.version:
            self._evaluator = self._restore(uow, row)
            self._version = row.version
            self._cursor_seq = row.seq
        if self._owns is None:
            self._catch_up(uow)

    def _restore(self, uow: UnitOfWork, row: Any) -> Evaluator:
        state = tables.detect_state
        mine = sa.select(state).where(state.c.detector == self.name)
        entries = [StateEntry(e.kind, e.rule_id, e.key, e.due, e.payload) for e in uow.execute(mine)]
        waiting: list[tuple[int, str, Any]] = []
        if row.low_seq is not None:
            owns = self._owns
            after = row.low_seq - 1
            while chunk := read_recorded(uow, after=after, through=row.seq, not_before=row.watermark, limit=_CHUNK):
                waiting += [(e.seq, e.key, e.event) for e in chunk if owns is None or owns(e.event.subject)]
                after = chunk[-1].seq
        checkpoint = Checkpoint(row.watermark, row.latest, row.late_events, row.skipped, row.low_seq)
        log.info("detection state restored: %d entries, %d events waiting", len(entries), len(waiting))
        return Evaluator.restore(
            self._rules, lateness=self.lateness, checkpoint=checkpoint, entries=entries, waiting=waiting
        )

    def _catch_up(self, uow: UnitOfWork) -> None:
        """Evaluate events stored since the cursor without a detector watching (before this transaction's)."""
        caught_up = 0
        while chunk := read_recorded(uow, after=self._cursor_seq, limit=_CHUNK):
            evaluator = self._take()
            findings = evaluator.observe(
                [entry.event for entry in chunk], keys=[entry.key for entry in chunk], seqs=[e.seq for e in chunk]
            )
            self._cursor_seq = chunk[-1].seq
            findings += self._advance(evaluator)
            self._store(uow, evaluator, findings, force=True)
            caught_up += len(chunk)
        if caught_up:
            log.info("detection caught up with %d events stored while no detector watched", caught_up)

    def _take(self) -> Evaluator:
        """The evaluator, about to change: until its changes are stored, it matches no stored version."""
        assert self._evaluator is not None, "before_append comes first"
        self._version_before, self._version = self._version, None
        return self._evaluator

    def _advance(self, evaluator: Evaluator, *, until: datetime | None = None) -> list[Finding]:
        if self.clock == "wall":
            return evaluator.advance(self._now())
        if until is not None and (evaluator.latest is None or until > evaluator.latest):
            return evaluator.advance(until)
        return evaluator.advance(None)

    def _store(self, uow: UnitOfWork, evaluator: Evaluator, findings: list[Finding], *, force: bool) -> None:
        stored, gone = evaluator.changes()
        if findings:
            self.detected += store_findings(uow, findings, detected_at=self._now(), detected_by="stream")
        if stored or gone:
            bulk = bulk_values(uow.dialect)
            name = self.name
            rows = [(name, e.kind, e.rule_id, e.key, bulk.instant(e.due), bulk.document(e.payload)) for e in stored]
            uow.upsert("detect_state", _STATE_COLUMNS, rows, key=_STATE_KEY)
            uow.delete_keys("detect_state", _STATE_KEY, [(name, *key) for key in gone])
        if not (force or findings or stored or gone):
            # Only the watermark moved: not worth a write (a restart recomputes it), and the evaluator
            # still holds what is stored.
            self._version = self._version_before
            return
        checkpoint = evaluator.checkpoint()
        version = secrets.randbits(62)
        cursors = tables.detect_cursors
        values = {
            "version": version,
            "seq": self._cursor_seq,
            "low_seq": checkpoint.low_seq,
            "watermark": checkpoint.watermark,
            "latest": checkpoint.latest,
            "late_events": checkpoint.late_events,
            "skipped": dict(checkpoint.skipped),
            "updated_at": self._now(),
        }
        updated = uow.execute(cursors.update().where(cursors.c.name == self.name).values(**values))
        if updated.rowcount == 0:
            uow.execute(cursors.insert().values(name=self.name, **values))
        self._version = version


_INCIDENT_WRITES = int.from_bytes(hashlib.blake2b(b"amends.incidents", digest_size=8).digest()) - (1 << 63)


def lock_incident_writes(uow: UnitOfWork) -> None:
    """Hold, until this unit of work ends, the lock every writer of incidents takes. A reader that takes it
    too (case intake, which follows incident ids) knows that no incident with a lower id is still to be
    committed. PostgreSQL: an advisory lock; SQLite has one writer at a time already."""
    if uow.dialect == "postgresql":
        uow.execute(sa.select(sa.func.pg_advisory_xact_lock(_INCIDENT_WRITES)))


def store_findings(
    uow: UnitOfWork, findings: Sequence[Finding], *, detected_at: datetime, detected_by: str
) -> Detected:
    """Write findings as incidents, with the effect of applying them in order: a candidate opens its
    incident unless one with its (rule, key) exists; a late resolution marks an open incident
    `resolved_late`. One insert for the candidates and one update for the resolutions."""
    if findings:
        lock_incident_writes(uow)
    values = bulk_values(uow.dialect)
    when = values.instant(detected_at)
    rows: list[tuple[Any, ...]] = []
    first_candidate: dict[tuple[str, str], int] = {}
    for position, finding in enumerate(findings):
        if isinstance(finding, Candidate):
            first_candidate.setdefault((finding.rule_id, finding.key), position)
            rows.append(
                (
                    finding.rule_id,
                    finding.key,
                    finding.customer,
                    finding.severity,
                    finding.playbook,
                    "open",
                    values.instant(finding.failure_at),
                    when,
                    detected_by,
                    values.document(dict(finding.facts)),
                )
            )
    opened = uow.insert_new("incidents", _INCIDENT_COLUMNS, rows, returning=("rule_id", "key")) if rows else []
    created = {(rule_id, key) for rule_id, key in opened}
    # A resolution that came before the candidate that made its incident in this group resolved nothing
    # (in order, the incident did not exist yet); every other one applies to the incident if it is open.
    resolutions = [
        finding
        for position, finding in enumerate(findings)
        if isinstance(finding, LateResolution)
        and not ((finding.rule_id, finding.key) in created and first_candidate[finding.rule_id, finding.key] > position)
    ]
    return Detected(len(opened), _resolve_late(uow, resolutions))


def _resolve_late(uow: UnitOfWork, resolutions: Sequence[LateResolution]) -> int:
    if not resolutions:
        return 0
    incidents = tables.incidents
    statement = (
        incidents.update()
        .where(
            incidents.c.rule_id == sa.bindparam("b_rule"),
            incidents.c.key == sa.bindparam("b_key"),
            incidents.c.status == "open",
        )
        .values(status="resolved_late", resolved_at=sa.bindparam("b_at"), resolution=sa.bindparam("b_event"))
    )
    result = uow.execute(
        statement,
        [{"b_rule": r.rule_id, "b_key": r.key, "b_at": r.resolved_at, "b_event": dict(r.event)} for r in resolutions],
    )
    return max(result.rowcount, 0)
