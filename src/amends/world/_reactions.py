"""What a customer does after an experience: contact support, complain, rate.

The same for every business; only the key field (order_id, booking_ref, job_id) and the sources differ.
Whether and how a customer reacts is decided when the experience ends, from what went wrong and how
satisfied they are then; the events follow over the next days.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from typing import Any

from amends.world._customers import Customer
from amends.world._engine import Engine, Envelope, Step
from amends.world._satisfaction import (
    CONTACT_WITHOUT_PROBLEM,
    complaint_probability,
    contact_probability,
    rate_probability,
    rating,
)
from amends.world._weights import Weights
from amends.world._zones import DAY_MS, HOUR_MS, MINUTE_MS

__all__ = ["Problem", "Reactions"]

_CHANNELS = Weights(("email", "chat", "phone", "web"), (0.35, 0.30, 0.25, 0.10))
_KEYLESS_CONTACT = 0.15  # contacts whose agent did not record the order, booking or job
_COMPLAINT_WITHOUT_PROBLEM = 0.001
_MAX_CONTACTS = 6
_WAKING_HOUR = 7


@dataclass(frozen=True, slots=True)
class Problem:
    """One kind of failure as customers experience it.

    `kind` names it in the ground truth, `topic` in support contacts and complaints; `severity` is the
    drop in satisfaction; `contact_rate` the base chance of contacting support about it, and
    `persistence` the chance of each further contact (3+ within a week for the unresolved).
    """

    kind: str
    topic: str
    severity: float
    contact_rate: float
    persistence: float


class Reactions:
    """Schedules and emits a business's support contacts, complaints and ratings."""

    __slots__ = ("_engine", "_feedback", "_key", "_quiet_topics", "_support", "_tickets")

    def __init__(self, engine: Engine, *, key: str, source: str, quiet_topics: tuple[str, ...]) -> None:
        """`source` is the business's; contacts come from its /support, ratings and complaints from /feedback."""
        self._engine = engine
        self._tickets = count(1).__next__
        self._key = key
        self._support = source + "/support"
        self._feedback = source + "/feedback"
        self._quiet_topics = quiet_topics

    def after(self, now: int, customer: Customer, key: str, problems: list[Problem]) -> None:
        """Decide whether to contact support or complain about an experience that has just ended."""
        engine = self._engine
        rng = engine.rng
        satisfaction = customer.feel(now)
        worst = max(problems, key=lambda p: p.severity) if problems else None
        if worst is None:
            if rng.random() < CONTACT_WITHOUT_PROBLEM:
                topic = self._quiet_topics[int(rng.random() * len(self._quiet_topics))]
                self._at(customer, now + engine.uniform(HOUR_MS, 10 * DAY_MS), self._contact, (customer, key, topic))
            if rng.random() < _COMPLAINT_WITHOUT_PROBLEM:
                when = now + engine.uniform(DAY_MS, 10 * DAY_MS)
                self._at(customer, when, self._complain, (customer, key, "service"))
        else:
            if rng.random() < contact_probability(worst.contact_rate, satisfaction):
                first = now + engine.uniform(10 * MINUTE_MS, DAY_MS)
                self._at(customer, first, self._contact, (customer, key, worst.topic))
                contacts = 1
                while contacts < _MAX_CONTACTS and rng.random() < worst.persistence:
                    later = first + engine.uniform(HOUR_MS, 7 * DAY_MS)
                    self._at(customer, later, self._contact, (customer, key, worst.topic))
                    contacts += 1
            severity = min(1.0, sum(p.severity for p in problems))
            if rng.random() < complaint_probability(severity, satisfaction):
                when = now + engine.uniform(DAY_MS // 2, 10 * DAY_MS)
                self._at(customer, when, self._complain, (customer, key, worst.topic))

    def rate(self, now: int, customer: Customer, key: str, failed: bool) -> None:
        """Decide whether the customer will rate an order, trip or job, which failed or went well."""
        engine = self._engine
        if engine.rng.random() < rate_probability(failed, customer.feel(now)):
            self._at(customer, now + engine.uniform(2 * HOUR_MS, 5 * DAY_MS), self._rate, (customer, key, failed))

    def _at(self, customer: Customer, time: int, step: Step, arg: Any) -> None:
        # People write and call while awake: a time in the small hours moves to the morning.
        engine = self._engine
        hour = engine.clock.local(customer.zone, time) % DAY_MS // HOUR_MS
        if hour < _WAKING_HOUR:
            time += (_WAKING_HOUR - hour) * HOUR_MS + engine.uniform(0, 2 * HOUR_MS)
        engine.at(time, step, arg)

    def _contact(self, now: int, arg: tuple[Customer, str, str]) -> Envelope:
        customer, key, topic = arg
        engine = self._engine
        rng = engine.rng
        customer.contacts += 1
        data: dict[str, Any] = {
            "ticket_id": f"T-{self._tickets():08d}",
            "channel": _CHANNELS.pick(rng.random()),
            "topic": topic,
        }
        if rng.random() >= _KEYLESS_CONTACT:
            data[self._key] = key
        return engine.emit(now, customer.zone, "support.contact", self._support, customer, data)

    def _complain(self, now: int, arg: tuple[Customer, str, str]) -> Envelope | None:
        customer, key, topic = arg
        effect = self._engine.effect
        if effect is not None and customer.won_back(now):
            effect.complaints_prevented += 1
            effect.prevented.append((customer.id, now))
            return None
        customer.complaints += 1
        if customer.first_complaint_at is None:
            customer.first_complaint_at = now
        data = {"topic": topic, self._key: key}
        return self._engine.emit(now, customer.zone, "complaint.filed", self._support, customer, data)

    def _rate(self, now: int, arg: tuple[Customer, str, bool]) -> Envelope:
        customer, key, failed = arg
        stars = rating(customer.feel(now), failed, self._engine.rng.gauss(0.0, 1.0))
        customer.rated(stars)
        data = {"rating": stars, self._key: key}
        return self._engine.emit(now, customer.zone, "feedback.rated", self._feedback, customer, data)
