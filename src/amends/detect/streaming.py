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
database and no clock. Storing its state and findings with the events that caused them is the shell's job
(not built yet: issue 2/10's next slice).
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from amends.detect._facts import correlation_key, event_ref, instant_text
from amends.detect.durations import format_duration
from amends.detect.incidents import Candidate, Finding, LateResolution
from amends.detect.rules import AbsenceRule, CountRule, MatchRule, Rule, RuleSet, SequenceRule, event_types
from amends.events import Event, dedup_key

__all__ = ["Evaluator"]

ExpectationStatus = Literal["open", "satisfied", "fired"]


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


@dataclass(order=True, slots=True)
class _Queued:
    time: datetime
    order: str
    event: Event = field(compare=False)


@dataclass(order=True, slots=True)
class _Timer:
    due: datetime
    rule_id: str
    key: str
    start_order: str
    forget: bool = False  # False: the deadline; True: stop watching for a late resolution


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
        self._by_type: dict[str, list[Rule]] = {}
        self._by_id = {rule.common.id: rule for rule in rules}
        for rule in rules:
            for event_type in set(event_types(rule)):
                self._by_type.setdefault(event_type, []).append(rule)

    # --- input ---------------------------------------------------------------------------------------

    def observe(self, events: list[Event]) -> list[Finding]:
        """Take newly stored events (each once). Late ones are evaluated now; the findings are returned."""
        findings: list[Finding] = []
        for event in events:
            if self.latest is None or event.time > self.latest:
                self.latest = event.time
            queued = _Queued(event.time, dedup_key(event.source, event.id), event)
            if self.watermark is not None and event.time < self.watermark:
                self.late_events += 1
                self._evaluate_group([queued], findings)
            else:
                heapq.heappush(self._buffer, queued)
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
            event_due = buffer[0].time if buffer and buffer[0].time < watermark else None
            timer_due = timers[0].due if timers and timers[0].due < watermark else None
            if event_due is None and timer_due is None:
                break
            if event_due is not None and (timer_due is None or event_due <= timer_due):
                group = [heapq.heappop(buffer)]
                while buffer and buffer[0].time == event_due:
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
        touched: dict[tuple[str, str], Event] = {}
        for queued in group:
            event = queued.event
            for rule in self._by_type.get(event.type, ()):
                if isinstance(rule, MatchRule):
                    self._on_match(rule, event, findings)
                elif isinstance(rule, AbsenceRule):
                    self._on_absence(rule, event, findings)
                elif isinstance(rule, SequenceRule):
                    self._on_sequence(rule, event, findings)
                else:
                    self._on_count(rule, event, touched)
        for rule_id, key in sorted(touched):
            rule = self._by_id[rule_id]
            assert isinstance(rule, CountRule)
            self._count_fires(rule, key, touched[rule_id, key], findings)

    def _on_match(self, rule: MatchRule, event: Event, findings: list[Finding]) -> None:
        if not rule.on.matches(event):
            return
        key = dedup_key(event.source, event.id) if rule.key is None else correlation_key(rule.key, event)
        if key is None:
            self.skipped[rule.common.id] += 1
            return
        facts = {"event": event_ref(event), "data": event.data}
        self._found(rule, key, event, event.time, facts, findings)

    def _on_absence(self, rule: AbsenceRule, event: Event, findings: list[Finding]) -> None:
        rule_id = rule.common.id
        if rule.after.matches(event):
            key = correlation_key(rule.key, event)
            due = None if key is None else rule.deadline.at(event)
            deadline = None if due is None else max(due, event.time)  # due before it started: due at once
            if key is None or deadline is None:
                self.skipped[rule_id] += 1
            elif (rule_id, key) not in self.expectations:
                order = dedup_key(event.source, event.id)
                self.expectations[rule_id, key] = Expectation("open", event, order, deadline)
                heapq.heappush(self._timers, _Timer(deadline, rule_id, key, order))
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
            elif expectation.status == "fired":
                del self.expectations[rule_id, key]  # its forget timer finds nothing
                findings.append(LateResolution(rule_id, key, event.time, event_ref(event)))

    def _fire(self, timer: _Timer, findings: list[Finding]) -> None:
        key = (timer.rule_id, timer.key)
        expectation = self.expectations.get(key)
        if expectation is None or expectation.start_order != timer.start_order:
            return  # the expectation it was set for is gone
        rule = self._by_id[timer.rule_id]
        assert isinstance(rule, AbsenceRule)
        if timer.forget or expectation.status == "satisfied":
            del self.expectations[key]
        elif expectation.status == "open":
            expectation.status = "fired"
            start = expectation.start
            facts = {"start": event_ref(start), "data": start.data, "deadline": instant_text(expectation.deadline)}
            self._found(rule, timer.key, start, expectation.deadline, facts, findings)
            forget_at = expectation.deadline + rule.watch_late_for
            heapq.heappush(self._timers, _Timer(forget_at, *key, timer.start_order, forget=True))

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
            heapq.heappush(self._cooldowns, (failure_at + common.cooldown, common.id, event.subject))
        out.append(
            Candidate(common.id, key, event.subject, common.severity.of(event), failure_at, facts, common.playbook)
        )

    def _expire(self, watermark: datetime) -> None:
        """Forget windows, pending firsts and cooldowns the watermark has passed."""
        cooldowns = self._cooldowns
        while cooldowns and cooldowns[0][0] < watermark:
            _, rule_id, customer = heapq.heappop(cooldowns)
            cooldown = self._by_id[rule_id].common.cooldown
            last = self.last_fired.get((rule_id, customer))
            if last is not None and cooldown is not None and last + cooldown < watermark:
                del self.last_fired[rule_id, customer]
        expiry = self._expiry
        while expiry and expiry[0][0] < watermark:
            _, rule_id, key = heapq.heappop(expiry)
            rule = self._by_id[rule_id]
            if isinstance(rule, CountRule):
                window = self.windows.get((rule_id, key))
                if window is not None:
                    seen = window.times[-1:] + ([window.last_fired] if window.last_fired else [])
                    if not seen or max(seen) + rule.within < watermark:
                        del self.windows[rule_id, key]
            elif isinstance(rule, SequenceRule):
                pending = self.pending.get((rule_id, key))
                if pending is not None and pending.first.time + rule.within < watermark:
                    del self.pending[rule_id, key]
