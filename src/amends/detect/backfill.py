"""Backfill: stored history replayed through the rules by the batch evaluator, its incidents stored.

For history loaded before detection ran, or rules added since: the ledger between `since` and `until` is
read as Arrow (`history.py`), evaluated at once with the watermark at `until` (`batch.py`), and the
findings are written as the streaming evaluator's would be. Incidents are unique on (rule, key), so a
backfill over history the streaming evaluator has seen, or a second backfill, opens nothing twice. It reads
only the event types the rules read, and it leaves the streaming evaluator's state alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from amends.detect.batch import evaluate_history
from amends.detect.history import Progress, read_history
from amends.detect.rules import RuleSet, event_types
from amends.detect.runner import Detected, store_findings
from amends.errors import InvalidInput
from amends.store import Database

__all__ = ["Backfilled", "backfill"]


@dataclass(frozen=True, slots=True)
class Backfilled:
    """What a backfill read, found and stored."""

    since: datetime | None
    until: datetime
    events: int
    findings: int
    detected: Detected
    by_rule: dict[str, int] = field(default_factory=dict)  # findings per rule
    skipped: dict[str, int] = field(default_factory=dict)  # events a rule could not read its key from
    read_seconds: float = 0.0
    evaluate_seconds: float = 0.0


def backfill(
    db: Database,
    rules: RuleSet,
    *,
    until: datetime,
    now: datetime,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> Backfilled:
    """Evaluate the events with `since <= time < until` and store the incidents they make."""
    if since is not None and since >= until:
        raise InvalidInput("since", f"must be before until ({until.isoformat()})")
    types = {event_type for rule in rules for event_type in event_types(rule)}
    started = time.perf_counter()
    frame = read_history(db, since=since, until=until, types=types, progress=progress)
    read = time.perf_counter()
    result = evaluate_history(rules, frame, until=until)
    evaluated = time.perf_counter()
    with db.unit_of_work(writes=True) as uow:
        detected = store_findings(uow, result.findings, detected_at=now, detected_by="backfill")
        uow.commit()
    by_rule: dict[str, int] = {}
    for finding in result.findings:
        by_rule[finding.rule_id] = by_rule.get(finding.rule_id, 0) + 1
    return Backfilled(
        since=since,
        until=until,
        events=frame.height,
        findings=len(result.findings),
        detected=detected,
        by_rule=by_rule,
        skipped=dict(result.skipped),
        read_seconds=read - started,
        evaluate_seconds=evaluated - read,
    )
