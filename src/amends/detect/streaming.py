"""The streaming evaluator: events in, findings out, in event time, one event at a time.

Time is event time. The evaluator keeps a watermark, the instant up to which it takes its input as complete:
the clock minus the allowed lateness (`detect_allowed_lateness`). Events newer than the watermark wait in a
buffer; when the watermark passes them they are evaluated in event-time order (ties by the event's ledger
key), so that every arrival order within the allowed lateness gives the same findings as the batch
evaluator, which sorts the whole history. Timers (an absence rule's deadline) fire when the watermark
passes them, after every event at or before their instant. An event older than the watermark when it
arrives is late: it is evaluated at once against the state as it is, and counted.

What each kind remembers, per rule and correlation key, and for how long:

- absence: the expectation opened by the first start event (open, satisfied, or fired), until its deadline
  passes (or, once fired, until `watch_late_for` after it, to mark the incident `resolved_late`);
- count: the times of the events inside the window, and the last time it fired (an episode goes on while
  the rule keeps firing within the window), until the window has passed them;
- sequence: the latest `first` event, until the window has passed it;
- cooldown: the last time the rule fired for a customer, until the cooldown has passed.

So the state grows with open windows and pending timers, never with history. This module is pure: no
database and no clock. It remembers which entries changed since the last `changes()`, and can be rebuilt
from the entries it gave and a `Checkpoint`: storing those with the events that caused them is the
runner's job (detect/runner.py).
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from amends.detect._facts import correlation_key, event_ref, instant_text
from amends.detect.incidents import Candidate, Finding, LateResolution
from amends.detect.rules import AbsenceRule, CountRule, MatchRule, Rule, RuleSet, SequenceRule, event_types
from amends.durations import format_duration
from amends.events import Event, dedup_key

__all__ = ["Checkpoint", "Evaluator", "StateEntry", "StateKind"]

ExpectationStatus = Literal["open", "satisfied", "fired"]
StateKind = Literal["expect", "window", "pending", "cooldown"]


@dataclass(slots=True)
class Expectation:
    """An absence rule waiting for its expected event."""

    status: ExpectationStatus
    start: Event
    start_order: str  # the start event's ledger key: which expectation a timer belongs to
    deadline: datetime


@dataclass(slots=True)
class Window:
    """A count rule's events inside its window, and when it last fired."""

    times: list[datetime] = field(default_factory=list)
    last_fired: datetime | None = None


@dataclass(slots=True)
class Pending:
    """A sequence rule's latest `first` event, and whether a `then` already paired with it."""

    first: Event
    fired: bool = False


@dataclass(frozen=True, slots=True)
class StateEntry:
    """One piece of the evaluator's state, as it is stored: what kind, for which rule and key, the instant
    it next needs attention (a deadline, or when it can be forgotten) and its content as JSON values,
    with instants as aware datetimes (written as RFC 3339; read back from text or as datetimes)."""

    kind: StateKind
    rule_id: str
    key: str
    due: datetime
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The evaluator's position besides its entries. Events waiting above the watermark are not in it: they
    are in the ledger, from `low_seq` on (the ledger sequence of the oldest one still waiting)."""

    watermark: datetime | None
    latest: datetime | None
    late_events: int
    skipped: Mapping[str, int]
    low_seq: int | None


# Queued events and timers are tuples, which heapq compares in C. An event's ledger key is unique, so
# the comparison never reaches the Event. Timer: (due, rule, key, start order, forget?), where forget
# means "stop watching for a late resolution" rather than "the deadline".
_Queued = tuple[datetime, str, int, Event]
_Timer = tuple[datetime, str, str, str, bool]


class Evaluator:
    """Runs a rule set over events in event time. `observe` takes events, `advance` moves the watermark."""

    def __init__(self, rules: RuleSet, *, lateness: timedelta = timedelta()) -> None:
        self.rules = rules
        self.lateness = lateness
        self.watermark: datetime | None = None
        self.latest: datetime | None = None  # the latest event time seen
        self.late_events = 0
        self.skipped: Counter[str] = Counter()  # per rule: events it could not read its key or deadline from
        self.expectations: dict[tuple[str, str], Expectation] = {}
        self.windows: dict[tuple[str, str], Window] = {}
        self.pending: dict[tuple[str, str], Pending] = {}
        self.last_fired: dict[tuple[str, str], datetime] = {}  # (rule, customer) -> failure_at, for cooldowns
        self._buffer: list[_Queued] = []
        self._timers: list[_Timer] = []
        self._expiry: list[tuple[datetime, str, str]] = []  # (instant, rule, key): look at the state then
        self._cooldowns: list[tuple[datetime, str, str]] = []  # (instant, rule, customer)
        self._dirty: set[tuple[StateKind, str, str]] = set()
        self._by_type: dict[str, list[Rule]] = {}
        self._by_id = {rule.common.id: rule for rule in rules}
        for rule in rules:
            for event_type in set(event_types(rule)):
                self._by_type.setdefault(event_type, []).append(rule)

    # --- input ---------------------------------------------------------------------------------------

    def observe(
        self, events: Sequence[Event], *, keys: Sequence[str] | None = None, seqs: Sequence[int] | None = None
    ) -> list[Finding]:
        """Take newly stored events (each once). Late ones are evaluated now; the findings are returned.

        `keys` are the events' ledger keys when the caller has them (else they are computed), `seqs` their
        ledger sequence numbers (kept so a checkpoint can say where the waiting events start).
        """
        findings: list[Finding] = []
        watermark, latest, buffer = self.watermark, self.latest, self._buffer
        for index, event in enumerate(events):
            time = event.time
            if latest is None or time > latest:
                latest = time
            queued = (
                time,
                dedup_key(event.source, event.id) if keys is None else keys[index],
                0 if seqs is None else seqs[index],
                event,
            )
            if watermark is not None and time < watermark:
                self.late_events += 1
                self._evaluate_group([queued], findings)
            else:
                heapq.heappush(buffer, queued)
        self.latest = latest
        return findings

    def advance(self, clock: datetime | None = None) -> list[Finding]:
        """Move the watermark to `clock` minus the allowed lateness (the latest event time if no clock is
        given) and evaluate everything it passed, in event-time order. The watermark never goes back."""
        reference = clock if clock is not None else self.latest
        if reference is None:
            return []
        watermark = reference - self.lateness
        if self.watermark is not None and watermark <= self.watermark:
            return []
        self.watermark = watermark
        findings: list[Finding] = []
        buffer, timers = self._buffer, self._timers
        while True:
            event_due = buffer[0][0] if buffer and buffer[0][0] < watermark else None
            timer_due = timers[0][0] if timers and timers[0][0] < watermark else None
            if event_due is None and timer_due is None:
                break
            if event_due is not None and (timer_due is None or event_due <= timer_due):
                group = [heapq.heappop(buffer)]
                while buffer and buffer[0][0] == event_due:
                    group.append(heapq.heappop(buffer))
                self._evaluate_group(group, findings)
            else:
                self._fire(heapq.heappop(timers), findings)
        self._expire(watermark)
        return findings

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # --- evaluation ------------------------------------------------------------------------------------

    def _evaluate_group(self, group: list[_Queued], findings: list[Finding]) -> None:
        """Events of one instant, in ledger-key order; count rules look at the instant as a whole."""
        touched: dict[tuple[str, str], Event] | None = None
        by_type = self._by_type
        for _, order, _, event in group:
            for rule in by_type.get(event.type, ()):
                if isinstance(rule, AbsenceRule):
                    self._on_absence(rule, event, order, findings)
                elif isinstance(rule, MatchRule):
                    self._on_match(rule, event, order, findings)
                elif isinstance(rule, SequenceRule):
                    self._on_sequence(rule, event, findings)
                else:
                    if touched is None:
                        touched = {}
                    self._on_count(rule, event, touched)
        if touched:
            for rule_id, key in sorted(touched):
                rule = self._by_id[rule_id]
                assert isinstance(rule, CountRule)
                self._count_fires(rule, key, touched[rule_id, key], findings)

    def _on_match(self, rule: MatchRule, event: Event, order: str, findings: list[Finding]) -> None:
        if not rule.on.matches(event):
            return
        key = order if rule.key is None else correlation_key(rule.key, event)
        if key is None:
            self.skipped[rule.common.id] += 1
            return
        facts = {"event": event_ref(event), "data": event.data}
        self._found(rule, key, event, event.time, facts, findings)

    def _on_absence(self, rule: AbsenceRule, event: Event, order: str, findings: list[Finding]) -> None:
        rule_id = rule.common.id
        if rule.after.matches(event):
            key = correlation_key(rule.key, event)
            due = None if key is None else rule.deadline.at(event)
            deadline = None if due is None else max(due, event.time)  # due before it started: due at once
            if key is None or deadline is None:
                self.skipped[rule_id] += 1
            elif (rule_id, key) not in self.expectations:
                self.expectations[rule_id, key] = Expectation("open", event, order, deadline)
                self._dirty.add(("expect", rule_id, key))
                heapq.heappush(self._timers, (deadline, rule_id, key, order, False))
        if rule.expect.matches(event):
            key = correlation_key(rule.key, event)
            if key is None:
                self.skipped[rule_id] += 1
                return
            expectation = self.expectations.get((rule_id, key))
            if expectation is None:
                return
            if expectation.status == "open":
                expectation.status = "satisfied"
                self._dirty.add(("expect", rule_id, key))
            elif expectation.status == "fired":
                del self.expectations[rule_id, key]  # its forget timer finds nothing
                self._dirty.add(("expect", rule_id, key))
                findings.append(LateResolution(rule_id, key, event.time, event_ref(event)))

    def _fire(self, timer: _Timer, findings: list[Finding]) -> None:
        _, rule_id, key, start_order, forget = timer
        expectation = self.expectations.get((rule_id, key))
        if expectation is None or expectation.start_order != start_order:
            return  # the expectation it was set for is gone
        rule = self._by_id[rule_id]
        assert isinstance(rule, AbsenceRule)
        if forget or expectation.status == "satisfied":
            del self.expectations[rule_id, key]
            self._dirty.add(("expect", rule_id, key))
        elif expectation.status == "open":
            expectation.status = "fired"
            self._dirty.add(("expect", rule_id, key))
            start = expectation.start
            facts = {"start": event_ref(start), "data": start.data, "deadline": instant_text(expectation.deadline)}
            self._found(rule, key, start, expectation.deadline, facts, findings)
            forget_at = expectation.deadline + rule.watch_late_for
            heapq.heappush(self._timers, (forget_at, rule_id, key, start_order, True))

    def _on_sequence(self, rule: SequenceRule, event: Event, findings: list[Finding]) -> None:
        rule_id = rule.common.id
        is_then, is_first = rule.then.matches(event), rule.first.matches(event)
        if not (is_then or is_first):
            return
        key = correlation_key(rule.key, event)
        if key is None:
            self.skipped[rule_id] += is_then + is_first  # once per role the event plays
            return
        pending = self.pending.get((rule_id, key))
        if is_then and pending is not None and not pending.fired and event.time - pending.first.time <= rule.within:
            pending.fired = True
            self._dirty.add(("pending", rule_id, key))
            first = pending.first
            facts = {
                "first": event_ref(first),
                "first_data": first.data,
                "then": event_ref(event),
                "then_data": event.data,
            }
            self._found(rule, f"{key}@{instant_text(first.time)}", event, event.time, facts, findings)
        if is_first:
            self.pending[rule_id, key] = Pending(event)
            self._dirty.add(("pending", rule_id, key))
            heapq.heappush(self._expiry, (event.time + rule.within, rule_id, key))

    def _on_count(self, rule: CountRule, event: Event, touched: dict[tuple[str, str], Event]) -> None:
        if not rule.on.matches(event):
            return
        key = correlation_key(rule.key, event)
        if key is None:
            self.skipped[rule.common.id] += 1
            return
        window = self.windows.setdefault((rule.common.id, key), Window())
        bisect.insort(window.times, event.time)
        self._dirty.add(("window", rule.common.id, key))
        touched[rule.common.id, key] = event  # the last one of the instant, in ledger-key order
        heapq.heappush(self._expiry, (event.time + rule.within, rule.common.id, key))

    def _count_fires(self, rule: CountRule, key: str, last: Event, findings: list[Finding]) -> None:
        window = self.windows[rule.common.id, key]
        now = last.time
        start = bisect.bisect_right(window.times, now - rule.within)
        del window.times[:start]  # (now - within, now] is the window
        inside = bisect.bisect_right(window.times, now)
        if inside < rule.at_least:
            return
        episode_goes_on = window.last_fired is not None and now - window.last_fired <= rule.within
        window.last_fired = now
        if episode_goes_on:
            return
        facts = {
            "count": inside,
            "within": format_duration(rule.within),
            "first_at": instant_text(window.times[0]),
            "last": event_ref(last),
        }
        self._found(rule, f"{key}@{instant_text(now)}", last, now, facts, findings)

    def _found(
        self, rule: Rule, key: str, event: Event, failure_at: datetime, facts: Mapping[str, Any], out: list[Finding]
    ) -> None:
        common = rule.common
        if common.cooldown is not None:
            last = self.last_fired.get((common.id, event.subject))
            if last is not None and failure_at - last < common.cooldown:
                return
            self.last_fired[common.id, event.subject] = failure_at
            self._dirty.add(("cooldown", common.id, event.subject))
            heapq.heappush(self._cooldowns, (failure_at + common.cooldown, common.id, event.subject))
        out.append(
            Candidate(common.id, key, event.subject, common.severity.of(event), failure_at, facts, common.playbook)
        )

    def _expire(self, watermark: datetime) -> None:
        """Forget windows, pending firsts and cooldowns the watermark has passed."""
        cooldowns, dirty = self._cooldowns, self._dirty
        while cooldowns and cooldowns[0][0] < watermark:
            _, rule_id, customer = heapq.heappop(cooldowns)
            cooldown = self._by_id[rule_id].common.cooldown
            last = self.last_fired.get((rule_id, customer))
            if last is not None and cooldown is not None and last + cooldown < watermark:
                del self.last_fired[rule_id, customer]
                dirty.add(("cooldown", rule_id, customer))
        expiry = self._expiry
        while expiry and expiry[0][0] < watermark:
            _, rule_id, key = heapq.heappop(expiry)
            rule = self._by_id[rule_id]
            if isinstance(rule, CountRule):
                window = self.windows.get((rule_id, key))
                if window is not None and _window_ends(window, rule) < watermark:
                    del self.windows[rule_id, key]
                    dirty.add(("window", rule_id, key))
            elif isinstance(rule, SequenceRule):
                pending = self.pending.get((rule_id, key))
                if pending is not None and pending.first.time + rule.within < watermark:
                    del self.pending[rule_id, key]
                    dirty.add(("pending", rule_id, key))

    # --- durable state ---------------------------------------------------------------------------------

    def changes(self) -> tuple[list[StateEntry], list[tuple[StateKind, str, str]]]:
        """The entries changed since the last call (to store) and the ones gone (to delete), in key order."""
        stored: list[StateEntry] = []
        gone: list[tuple[StateKind, str, str]] = []
        for kind, rule_id, key in sorted(self._dirty):
            entry = self._entry(kind, rule_id, key)
            if entry is None:
                gone.append((kind, rule_id, key))
            else:
                stored.append(entry)
        self._dirty.clear()
        return stored, gone

    def checkpoint(self) -> Checkpoint:
        """Where the evaluator is, besides its entries."""
        low_seq = min((queued[2] for queued in self._buffer), default=None)
        return Checkpoint(self.watermark, self.latest, self.late_events, dict(self.skipped), low_seq)

    @classmethod
    def restore(
        cls,
        rules: RuleSet,
        *,
        lateness: timedelta,
        checkpoint: Checkpoint,
        entries: Iterable[StateEntry],
        waiting: Iterable[tuple[int, str, Event]] = (),
    ) -> Evaluator:
        """An evaluator in the state that `checkpoint` and `entries` describe, with the events that were
        waiting above the watermark (`(seq, ledger key, event)`) back in its buffer. Entries of rules that
        are no longer in the set are left out (and reported as gone by the next `changes`)."""
        evaluator = cls(rules, lateness=lateness)
        evaluator.watermark = checkpoint.watermark
        evaluator.latest = checkpoint.latest
        evaluator.late_events = checkpoint.late_events
        evaluator.skipped.update(checkpoint.skipped)
        for entry in entries:
            rule = evaluator._by_id.get(entry.rule_id)
            if rule is None or not evaluator._load(rule, entry):
                evaluator._dirty.add((entry.kind, entry.rule_id, entry.key))
        for seq, order, event in waiting:
            heapq.heappush(evaluator._buffer, (event.time, order, seq, event))
        return evaluator

    def _entry(self, kind: StateKind, rule_id: str, key: str) -> StateEntry | None:
        rule = self._by_id.get(rule_id)
        if rule is None:
            return None  # a rule no longer in the set: its stored entries go
        payload: dict[str, Any]
        if kind == "expect":
            expectation = self.expectations.get((rule_id, key))
            if expectation is None:
                return None
            assert isinstance(rule, AbsenceRule)
            due = expectation.deadline
            if expectation.status == "fired":
                due += rule.watch_late_for
            payload = {
                "status": expectation.status,
                "start": _event_json(expectation.start),
                "start_order": expectation.start_order,
                "deadline": expectation.deadline,
            }
            return StateEntry(kind, rule_id, key, due, payload)
        if kind == "window":
            window = self.windows.get((rule_id, key))
            if window is None:
                return None
            assert isinstance(rule, CountRule)
            payload = {
                "times": list(window.times),
                "last_fired": window.last_fired,
            }
            return StateEntry(kind, rule_id, key, _window_ends(window, rule), payload)
        if kind == "pending":
            pending = self.pending.get((rule_id, key))
            if pending is None:
                return None
            assert isinstance(rule, SequenceRule)
            payload = {"first": _event_json(pending.first), "fired": pending.fired}
            return StateEntry(kind, rule_id, key, pending.first.time + rule.within, payload)
        last = self.last_fired.get((rule_id, key))
        if last is None or rule.common.cooldown is None:
            return None
        return StateEntry(kind, rule_id, key, last + rule.common.cooldown, {"last": last})

    def _load(self, rule: Rule, entry: StateEntry) -> bool:
        """Put one stored entry back; False if it does not fit the rule as it is now."""
        payload, rule_id, key = entry.payload, entry.rule_id, entry.key
        if entry.kind == "expect" and isinstance(rule, AbsenceRule):
            status: ExpectationStatus = payload["status"]
            deadline = _instant(payload["deadline"])
            order = payload["start_order"]
            self.expectations[rule_id, key] = Expectation(status, _event_from_json(payload["start"]), order, deadline)
            forget = status == "fired"
            due = deadline + rule.watch_late_for if forget else deadline
            heapq.heappush(self._timers, (due, rule_id, key, order, forget))
            return True
        if entry.kind == "window" and isinstance(rule, CountRule):
            last_fired = payload["last_fired"]
            times = [_instant(time) for time in payload["times"]]
            window = Window(times, None if last_fired is None else _instant(last_fired))
            self.windows[rule_id, key] = window
            heapq.heappush(self._expiry, (_window_ends(window, rule), rule_id, key))
            return True
        if entry.kind == "pending" and isinstance(rule, SequenceRule):
            first = _event_from_json(payload["first"])
            self.pending[rule_id, key] = Pending(first, bool(payload["fired"]))
            heapq.heappush(self._expiry, (first.time + rule.within, rule_id, key))
            return True
        if entry.kind == "cooldown" and rule.common.cooldown is not None:
            last = _instant(payload["last"])
            self.last_fired[rule_id, key] = last
            heapq.heappush(self._cooldowns, (last + rule.common.cooldown, rule_id, key))
            return True
        return False


def _instant(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _window_ends(window: Window, rule: CountRule) -> datetime:
    """When a count window holds nothing that matters any more: its newest event or firing, plus the window."""
    seen = window.times[-1:] + ([window.last_fired] if window.last_fired is not None else [])
    return max(seen) + rule.within


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time,
        "subject": event.subject,
        "data": event.data,
        "attributes": event.attributes,
    }


def _event_from_json(value: Mapping[str, Any]) -> Event:
    return Event(
        id=value["id"],
        source=value["source"],
        type=value["type"],
        time=_instant(value["time"]),
        subject=value["subject"],
        data=value["data"],
        attributes=value["attributes"],
    )
