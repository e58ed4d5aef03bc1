"""Detection as a running part of a process: where the rules come from, and the sweeper.

`RuleSource` reads the shipped packs and the rule directory the settings name. It notices when a file
changes, and a rule set with any error never replaces the one running: the error is logged and kept
(`last_error`) and the previous rules go on. `Detection` holds the source and the `Detector` that ingestion
hands its events to; its `tick` picks up changed rules and fires the deadlines that fell due (amends'
background work calls it every `detect_sweep_seconds`: `amends worker` alone, `amends serve` beside the API), and
then lets the risk watch score new moments for the risk rules, if any are enabled (detect/risk/watch.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from amends.config import Settings
from amends.detect.errors import RuleSetError
from amends.detect.packs import pack_paths
from amends.detect.rules import RuleSet, event_types, load_rules
from amends.detect.runner import Detected, Detector
from amends.errors import InvalidInput
from amends.store import Database

if TYPE_CHECKING:
    from amends.detect.risk.watch import RiskWatch

__all__ = ["Detection", "RuleSource", "known_event_types"]

log = logging.getLogger(__name__)

_Fingerprint = tuple[tuple[str, int, int], ...]
_BROKER_SETTLE = timedelta(minutes=1)  # as asking for feedback waits (feedback/asking.py)


class RuleSource:
    """The rule files of the shipped `packs` and of `directory` (its *.yaml and *.yml files)."""

    def __init__(self, packs: Sequence[str] = (), directory: Path | None = None) -> None:
        self.paths = pack_paths(packs)
        self.directory = directory
        self.last_error: RuleSetError | None = None
        self._seen: _Fingerprint | None = None

    def load(self) -> RuleSet:
        """Read and check every file now; raises RuleSetError (nothing loaded) on any problem."""
        if self.directory is not None and not self.directory.is_dir():
            raise InvalidInput("rules_dir", f"not a directory: {self.directory}")
        fingerprint = self._fingerprint()
        try:
            rules = load_rules([*self.paths, *([self.directory] if self.directory is not None else [])])
        except RuleSetError as exc:
            self.last_error = exc
            self._seen = fingerprint
            raise
        self.last_error = None
        self._seen = fingerprint
        return rules

    def reload_if_changed(self) -> RuleSet | None:
        """The new rule set if a file was added, removed or changed since the last load and the new set
        is valid; None otherwise (an invalid set is logged and kept in `last_error`)."""
        if self._fingerprint() == self._seen:
            return None
        try:
            return self.load()
        except (RuleSetError, InvalidInput) as exc:
            log.error("the changed rules were not loaded; the previous rules keep running: %s", exc)
            return None

    def _fingerprint(self) -> _Fingerprint:
        files = list(self.paths)
        if self.directory is not None and self.directory.is_dir():
            files += sorted(p for p in self.directory.iterdir() if p.suffix in (".yaml", ".yml"))
        found = []
        for file in files:
            try:
                stat = file.stat()
            except OSError:
                continue
            found.append((str(file), stat.st_mtime_ns, stat.st_size))
        return tuple(found)


class Detection:
    """The detector of a process and its rules."""

    def __init__(
        self,
        db: Database,
        detector: Detector,
        source: RuleSource,
        *,
        sweep_seconds: float = 1.0,
        partitioned: bool = False,
    ) -> None:
        self.db = db
        self.detector = detector
        self.source = source
        self.sweep_seconds = sweep_seconds
        # Broker mode: the partitions' detectors (detect/partitioned.py) evaluate the events, each swept by the
        # worker that owns it; this one only holds the rules they take, and the risk watch runs here.
        self.partitioned = partitioned
        self._risk: RiskWatch | None = None  # made when a risk rule is first enabled (it loads the model's libraries)

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> Detection:
        """Detection as the settings describe it. Raises RuleSetError if the rules have problems."""
        source = RuleSource(settings.rule_packs, settings.rules_dir)
        detector = Detector(source.load(), lateness=settings.detect_allowed_lateness, clock=settings.detect_clock)
        partitioned = settings.broker_url is not None
        return cls(db, detector, source, sweep_seconds=settings.detect_sweep_seconds, partitioned=partitioned)

    @property
    def rules(self) -> RuleSet:
        """The rules running now (changed files picked up by `tick`)."""
        return self.detector.rules

    def tick(self, *, now: datetime | None = None) -> Detected:
        """Pick up changed rules, fire what fell due, then score the moments that came for the risk rules."""
        rules = self.source.reload_if_changed()
        if rules is not None:
            log.info("rules reloaded: %d rules", len(rules))
            self.detector.use_rules(rules)
        detected = Detected() if self.partitioned else self.detector.sweep(self.db)
        risk = self.detector.rules.risk
        if risk:
            if self._risk is None:
                from amends.detect.risk.watch import RiskWatch  # imports LightGBM: only when a risk rule runs

                self._risk = RiskWatch(settle=_BROKER_SETTLE if self.partitioned else None)
            try:
                detected += self._risk.tick(self.db, risk, now=now or datetime.now(UTC))
            except Exception:  # a model or a batch that fails must not stop the sweep, recovery and delivery after it
                log.exception("the risk rules' scoring failed; the other background work goes on, and it is tried "
                              "again at the next sweep")  # fmt: skip
        return detected


def known_event_types(settings: Settings) -> set[str]:
    """The event types amends is told of before any arrives: those the rules read and the settings name."""
    known = {*settings.contact_event_types, *settings.profile_event_types, *settings.feedback_request_event_types}
    for rule in RuleSource(settings.rule_packs, settings.rules_dir).load().rules:
        known.update(event_types(rule))
    return known
