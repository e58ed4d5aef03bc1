"""The shop: customers in Europe order parcels; carriers deliver them, mostly on time.

Order life: placed -> shipped -> delivered (on time, late or damaged), or lost and never delivered;
sometimes returned. Each order is one small object on the heap until its last step.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

from amends.world._customers import Customer
from amends.world._engine import Engine, Envelope
from amends.world._reactions import Problem, Reactions
from amends.world._weights import Weights
from amends.world._zones import DAY_MS, HOUR_MS, Zone

__all__ = ["Shop"]

ZONES = (
    Zone("Europe/Berlin", 60, "eu"),
    Zone("Europe/Paris", 60, "eu"),
    Zone("Europe/Madrid", 60, "eu"),
    Zone("Europe/Rome", 60, "eu"),
    Zone("Europe/Amsterdam", 60, "eu"),
    Zone("Europe/Warsaw", 60, "eu"),
    Zone("Europe/London", 0, "eu"),
    Zone("Europe/Dublin", 0, "eu"),
    Zone("Europe/Lisbon", 0, "eu"),
    Zone("Europe/Athens", 120, "eu"),
    Zone("Europe/Helsinki", 120, "eu"),
)
_HOMES = Weights(range(len(ZONES)), (22, 16, 12, 10, 6, 6, 12, 3, 4, 5, 4))
_MEAN_GAP_DAYS = (60.0, 25.0, 10.0)  # by tier: bronze, silver, gold
_ORDER_HOURS = Weights(range(24), (1, 1, 0.5, 0.5, 0.5, 1, 2, 3, 4, 5, 5, 5, 6, 6, 5, 5, 5, 6, 7, 9, 10, 9, 6, 3))
_ITEMS = Weights((1, 2, 3, 4, 5, 6), (45, 25, 14, 8, 5, 3))
# Carriers: (name, share of parcels, share delivered after the promised day)
_CARRIERS = (("Parcelo", 0.35, 0.06), ("SwiftPost", 0.30, 0.09), ("Northline", 0.20, 0.12), ("CityCourier", 0.15, 0.16))
_CARRIER = Weights(range(len(_CARRIERS)), [share for _, share, _ in _CARRIERS])
_DAYS_LATE = Weights((1, 2, 3, 4, 5, 6, 7), (55, 25, 10, 4, 3, 2, 1))
_NEVER_SHIPPED = 0.003
_LOST = 0.012
_DAMAGED = 0.03
_RETURN_REASONS = Weights(("wrong_size", "changed_mind", "not_as_described", "defective"), (40, 30, 20, 10))

SOURCE = "https://shop.example.com"
_ORDERS = SOURCE + "/orders"

_LATE = (
    Problem("late_delivery", "late_delivery", 0.08, 0.25, 0.15),  # one day late
    Problem("late_delivery", "late_delivery", 0.15, 0.40, 0.25),  # two or three days
    Problem("late_delivery", "late_delivery", 0.22, 0.55, 0.35),  # four or more
)
_DAMAGE = Problem("damaged", "damaged_item", 0.18, 0.60, 0.25)
_NEVER_DELIVERED = Problem("never_delivered", "missing_order", 0.35, 0.90, 0.55)


@dataclass(slots=True)
class _Order:
    customer: Customer
    id: str
    promised_by: int
    carrier: str
    late_share: float
    damaged: bool = False


class Shop:
    """Customers ordering from an online shop that sells in euros across Europe."""

    prefix = "C"
    source = SOURCE
    zones = ZONES
    quiet_topics = ("product_question", "invoice", "account", "return_policy")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._orders = count(1).__next__
        self._reactions = Reactions(
            engine,
            key="order_id",
            source=SOURCE,
            quiet_topics=self.quiet_topics,
        )

    def home(self, customer: Customer) -> None:
        """Give a new customer a home zone and schedule their first order."""
        engine = self._engine
        customer.zone = _HOMES.pick(engine.rng.random())
        customer.mean_gap_days = _MEAN_GAP_DAYS[customer.tier]
        first = engine.next_visit(customer, engine.start, customer.satisfaction, _ORDER_HOURS)
        engine.at(first, self._visit, customer)

    def _visit(self, now: int, customer: Customer) -> Envelope | None:
        engine = self._engine
        rng = engine.rng
        satisfaction = engine.stays(customer, now)
        if satisfaction is None:
            return None
        engine.at(engine.next_visit(customer, now, satisfaction, _ORDER_HOURS), self._visit, customer)
        customer.episodes += 1
        zone = customer.zone
        carrier, _, late_share = _CARRIERS[_CARRIER.index(rng.random())]
        days = 2 + int(rng.random() * 4)
        promised = engine.clock.utc(zone, engine.clock.day(zone, now) + days, 20 * HOUR_MS)
        order = _Order(customer, f"O-{self._orders():08d}", promised, carrier, late_share)
        items = _ITEMS.pick(rng.random())
        total = round(rng.lognormvariate(3.4, 0.6) * items**0.8 * (1.0 + 0.25 * customer.tier), 2)
        if rng.random() < _NEVER_SHIPPED:
            engine.at(promised + engine.uniform(DAY_MS, 3 * DAY_MS), self._missing, order)
        else:
            engine.at(now + engine.uniform(3 * HOUR_MS, 30 * HOUR_MS), self._ship, order)
        data = {
            "order_id": order.id,
            "total": total,
            "currency": "EUR",
            "items": items,
            "promised_by": engine.clock.stamp(zone, promised),
        }
        return engine.emit(now, zone, "order.placed", _ORDERS, customer, data)

    def _ship(self, now: int, order: _Order) -> Envelope:
        engine = self._engine
        rng = engine.rng
        customer = order.customer
        zone = customer.zone
        if rng.random() < _LOST:
            engine.at(order.promised_by + engine.uniform(DAY_MS, 3 * DAY_MS), self._missing, order)
        else:
            promised_day = engine.clock.day(zone, order.promised_by)
            if rng.random() < order.late_share:
                day = promised_day + _DAYS_LATE.pick(rng.random())
            else:
                first = engine.clock.day(zone, now) + 1
                day = first + int(rng.random() * (promised_day - first + 1)) if promised_day >= first else first
            delivered = engine.clock.utc(zone, day, 9 * HOUR_MS + engine.uniform(0, 11 * HOUR_MS))
            order.damaged = rng.random() < _DAMAGED
            engine.at(max(delivered, now + 2 * HOUR_MS), self._deliver, order)
        data = {"order_id": order.id, "carrier": order.carrier}
        return engine.emit(now, zone, "order.shipped", _ORDERS, customer, data)

    def _deliver(self, now: int, order: _Order) -> Envelope:
        engine = self._engine
        rng = engine.rng
        customer = order.customer
        problems: list[Problem] = []
        if now > order.promised_by:
            days_late = engine.clock.day(customer.zone, now) - engine.clock.day(customer.zone, order.promised_by)
            late = _LATE[0 if days_late <= 1 else 1 if days_late <= 3 else 2]
            customer.suffer(now, late.kind, late.severity)
            problems.append(late)
        if order.damaged:
            customer.suffer(now, _DAMAGE.kind, _DAMAGE.severity)
            problems.append(_DAMAGE)
        if not problems:
            customer.enjoy(now)
        if order.damaged and rng.random() < 0.55:
            engine.at(now + engine.uniform(2 * HOUR_MS, 3 * DAY_MS), self._return, (order, "damaged"))
        elif rng.random() < (0.12 if problems else 0.05):
            reason = "late" if problems else _RETURN_REASONS.pick(rng.random())
            engine.at(now + engine.uniform(DAY_MS, 14 * DAY_MS), self._return, (order, reason))
        self._reactions.after(now, customer, order.id, problems)
        self._reactions.rate(now, customer, order.id, bool(problems))
        data = {"order_id": order.id, "carrier": order.carrier, "damaged": order.damaged}
        return engine.emit(now, customer.zone, "order.delivered", _ORDERS, customer, data)

    def _missing(self, now: int, order: _Order) -> None:
        customer = order.customer
        customer.suffer(now, _NEVER_DELIVERED.kind, _NEVER_DELIVERED.severity)
        self._reactions.after(now, customer, order.id, [_NEVER_DELIVERED])
        self._reactions.rate(now, customer, order.id, True)

    def _return(self, now: int, arg: tuple[_Order, str]) -> Envelope:
        order, reason = arg
        data = {"order_id": order.id, "reason": reason}
        return self._engine.emit(now, order.customer.zone, "order.returned", _ORDERS, order.customer, data)
