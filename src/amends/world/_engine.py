"""The simulation engine: one clock, one seeded generator, one queue of scheduled steps.

A step is a function of (time, argument) that may emit one event and schedule further steps. Steps run
in time order (ties in the order they were scheduled), so events leave the engine in non-decreasing time
order; a step is never scheduled before the step running now. The queue holds each customer's next visit
and the next step of each open order, trip or job: memory grows with customers and open work, never
with the number of events already emitted.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from heapq import heapify, heappop, heappush
from typing import Any

from amends.world._customers import Customer
from amends.world._ids import uuid_texts
from amends.world._satisfaction import churn_probability, gap_factor
from amends.world._weights import Weights
from amends.world._zones import DAY_MS, HOUR_MS, Clock

__all__ = ["Effect", "Engine", "Envelope", "Step"]

Envelope = dict[str, Any]
Step = Callable[[int, Any], Envelope | None]
_SEQ_BITS = 40  # a trillion steps per world before sequence numbers could collide
_BUCKET_MS = HOUR_MS


class Effect:
    """How customers react to recovery, when the world has the product in the loop (docs/world.md#reacting).

    A recovery (an apology with a remedy) that reaches a customer within `timely` of their last failure wins them
    back with probability `true_effect`, drawn from a generator of its own: then, for `lasts`, they neither complain
    nor leave. A late recovery, or none, changes nothing. So a timely recovery lowers the chance to complain and to
    leave by `true_effect`. (A customer who stays instead of leaving goes on drawing from the world's generator:
    what follows is not the world without recovery, event for event.)
    """

    __slots__ = ("complaints_prevented", "departures_prevented", "lasts", "late", "prevented", "rng", "timely",
                 "timely_count", "true_effect", "won_back")  # fmt: skip

    def __init__(self, true_effect: float, rng: random.Random, *, timely: int, lasts: int) -> None:
        self.true_effect = true_effect
        self.rng = rng
        self.timely = timely
        self.lasts = lasts
        self.timely_count = self.late = self.won_back = 0
        self.complaints_prevented = self.departures_prevented = 0
        self.prevented: list[tuple[str, int]] = []  # (customer, when) of each complaint not made


class Engine:
    """Runs one world's steps in time order between `start` and `end` (UTC milliseconds)."""

    __slots__ = (
        "_buckets",
        "_current",
        "_current_end",
        "_hours",
        "_ids",
        "_seq",
        "built",
        "clock",
        "customers",
        "effect",
        "end",
        "now",
        "rng",
        "start",
    )

    def __init__(self, rng: random.Random, ids: random.Random, clock: Clock, start: int, end: int) -> None:
        self.rng = rng
        self.clock = clock
        self.start = start
        self.end = end
        self.now = start
        self.customers: list[Customer] = []
        self.built = 0
        self.effect: Effect | None = None
        # A calendar queue: steps wait in hourly buckets (appending is cheap) and only the current hour's
        # steps are kept in a heap, which stays small. Entries are (time << 40 | sequence, step, arg).
        self._current: list[tuple[int, Step, Any]] = []
        self._current_end = 0
        self._buckets: dict[int, list[tuple[int, Step, Any]]] = {}
        self._hours: list[int] = []  # a heap of the buckets' hours
        self._seq = 0
        self._ids = uuid_texts(ids).__next__

    @property
    def pending(self) -> int:
        """How many steps are scheduled: customers' next visits and open work."""
        return len(self._current) + sum(map(len, self._buckets.values()))

    def at(self, time: int, step: Step, arg: Any) -> None:
        """Schedule a step; one due at or after the end of the window is dropped, being unobservable."""
        if time < self.end:
            if time < self.now:
                time = self.now
            entry = (time << _SEQ_BITS | self._seq, step, arg)
            self._seq += 1
            if time < self._current_end:
                heappush(self._current, entry)
            else:
                hour = time // _BUCKET_MS
                bucket = self._buckets.get(hour)
                if bucket is None:
                    self._buckets[hour] = [entry]
                    heappush(self._hours, hour)
                else:
                    bucket.append(entry)

    def run(self) -> Iterator[Envelope]:
        """Run steps in time order and yield the events they emit; `now` is the time of the last one."""
        current = self._current
        while True:
            while current:
                key, step, arg = heappop(current)
                self.now = time = key >> _SEQ_BITS
                envelope = step(time, arg)
                if envelope is not None:
                    yield envelope
            if not self._hours:
                return
            hour = heappop(self._hours)
            current += self._buckets.pop(hour)
            heapify(current)
            self._current_end = (hour + 1) * _BUCKET_MS

    def emit(self, time: int, zone: int, type: str, source: str, customer: Customer, data: Envelope) -> Envelope:
        """Build the CloudEvents envelope of one event about a customer, stamped in a zone's local offset."""
        self.built += 1
        customer.last_activity_at = time
        return {
            "specversion": "1.0",
            "id": self._ids(),
            "source": source,
            "type": type,
            "time": self.clock.stamp(zone, time),
            "subject": customer.id,
            "data": data,
        }

    def stays(self, customer: Customer, now: int) -> float | None:
        """The customer's satisfaction now, or None when they leave now (and are marked as churned). A customer a
        recovery won back stays (the draw is made all the same, so the rest of the world does not shift)."""
        satisfaction = customer.feel(now)
        if self.rng.random() < churn_probability(satisfaction):
            if self.effect is not None and customer.won_back(now):
                self.effect.departures_prevented += 1
                return satisfaction
            customer.churned_at = now
            return None
        return satisfaction

    def recover(self, customer: Customer, at: int) -> bool:
        """An apology with a remedy reached the customer at `at` (not before the simulation's `now`); whether it
        came in time to count (see `Effect`)."""
        effect = self.effect
        failed = customer.last_failure_at
        if effect is None or failed is None or customer.recovered_failure_at == failed:
            return False
        if at - failed > effect.timely:
            effect.late += 1
            return False
        customer.recovered_failure_at = failed
        effect.timely_count += 1
        if effect.rng.random() < effect.true_effect:
            effect.won_back += 1
            customer.won_back_until = max(customer.won_back_until or 0, at + effect.lasts)
        return True

    def next_visit(self, customer: Customer, now: int, satisfaction: float, hours: Weights[int]) -> int:
        """When the customer will next buy, book or come in: an exponential gap at a usual hour of day."""
        rng = self.rng
        clock = self.clock
        zone = customer.zone
        gap = rng.expovariate(1.0) * customer.mean_gap_days * gap_factor(satisfaction)
        day = clock.day(zone, now + int(gap * DAY_MS))
        time = clock.utc(zone, day, hours.index(rng.random()) * HOUR_MS + int(rng.random() * HOUR_MS))
        return time if time > now else time + DAY_MS

    def uniform(self, low: int, high: int) -> int:
        """A uniform whole number of milliseconds in [low, high)."""
        return low + int(self.rng.random() * (high - low))
