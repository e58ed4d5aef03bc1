"""A world as a stream: the seeded simulation of one business, its events in arrival order.

Nothing is generated ahead of the consumer: each `next()` runs the simulation only as far as the next
event. The same arguments always give the same events, byte for byte.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from amends.world._airline import Airline
from amends.world._business import Business, parse_business
from amends.world._customers import Customer
from amends.world._delivery import Arrivals
from amends.world._engine import Effect, Engine, Envelope
from amends.world._errors import WorldError
from amends.world._garage import Garage
from amends.world._profiles import Profiles
from amends.world._satisfaction import BASELINE
from amends.world._shop import Shop
from amends.world._truth import CustomerTruth, customer_truth
from amends.world._weights import Weights
from amends.world._zones import DAY_MS, Clock, ms_to_datetime

__all__ = ["DEFAULT_MAX_LATENESS", "DEFAULT_START", "DEFAULT_TIMELY", "Reacted", "WorldStream", "generate_world"]

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_MAX_LATENESS = timedelta(hours=2)
DEFAULT_TIMELY = timedelta(hours=48)
_WON_BACK_FOR = timedelta(days=90)

_TIERS = Weights((0, 1, 2), (60, 30, 10))  # bronze, silver, gold
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Behaviour(Protocol):
    """What a business adds to the engine: its customers' ids, zones and first visits."""

    prefix: str

    def home(self, customer: Customer) -> None:
        """Settle a new customer (zone, habits) and schedule their first visit."""


@dataclass(frozen=True, slots=True)
class Reacted:
    """How customers reacted to recovery so far: recoveries in time and late, customers won back, and the
    complaints and departures that did not happen because of it."""

    true_effect: float
    timely: int
    late: int
    won_back: int
    complaints_prevented: int
    departures_prevented: int


class WorldStream(Iterator[Envelope]):
    """The events of one generated world, produced as they are consumed.

    `pending` counts what the generator holds at the moment (scheduled steps and events waiting to
    arrive late): it grows with the customers and their open orders, trips and jobs, never with the
    events already produced. `truth()` reads the ground truth as of the last event produced.
    """

    def __init__(
        self,
        business: Business,
        *,
        customers: int,
        days: int,
        seed: int,
        start: datetime,
        late_share: float,
        max_lateness: timedelta,
        duplicate_share: float,
        true_effect: float | None = None,
        timely: timedelta = DEFAULT_TIMELY,
    ) -> None:
        self.business = business
        self.customers = customers
        self.days = days
        self.seed = seed
        self.start = start
        self.end = start + timedelta(days=days)
        begin = (start - _EPOCH) // timedelta(milliseconds=1)
        name = f"amends.world/{business}/{seed}"  # a string seed: Random(-1) would equal Random(1)
        zones = {"shop": Shop.zones, "airline": Airline.zones, "car_service": Garage.zones}[business]
        clock = Clock(zones, start.year - 1, self.end.year + 2)
        simulation = random.Random(name)  # noqa: S311 - a reproducible simulation, not a secret
        ids = random.Random(name + "/ids")  # noqa: S311 - as above
        self._engine = engine = Engine(simulation, ids, clock, begin, begin + days * DAY_MS)
        behaviour: _Behaviour
        if business == "shop":
            behaviour = Shop(engine)
        elif business == "airline":
            behaviour = Airline(engine, name)
        else:
            behaviour = Garage(engine)
        source = {"shop": Shop.source, "airline": Airline.source, "car_service": Garage.source}[business]
        # Profiles draw from a generator of their own, so the rest of the world is the same with or without them.
        profiles = Profiles(engine, random.Random(name + "/profiles"), source + "/customers", zones)  # noqa: S311
        if true_effect is not None:
            engine.effect = Effect(
                true_effect,
                random.Random(name + "/effect"),  # noqa: S311 - as above
                timely=timely // timedelta(milliseconds=1),
                lasts=_WON_BACK_FOR // timedelta(milliseconds=1),
            )
        rng = engine.rng
        low, high = BASELINE
        for n in range(1, customers + 1):
            tier = _TIERS.index(rng.random())
            baseline = low + (high - low) * rng.random()
            customer = Customer(f"{behaviour.prefix}-{n:06d}", tier, 0, baseline, 0.0, begin)
            engine.customers.append(customer)
            behaviour.home(customer)
            profiles.add(customer)
        self._arrivals = Arrivals(
            engine,
            random.Random(name + "/arrivals"),  # noqa: S311 - as above
            late_share=late_share,
            max_lateness=max_lateness // timedelta(milliseconds=1),
            duplicate_share=duplicate_share,
        )
        self._events = self._arrivals.run()
        self._by_id = {customer.id: customer for customer in engine.customers}

    def __next__(self) -> Envelope:
        return next(self._events)

    def __iter__(self) -> Iterator[Envelope]:
        # The inner generator shares this stream's state; iterating it directly spares a method call
        # per event in `for` loops.
        return self._events

    @property
    def pending(self) -> int:
        """How many steps and held-back events the generator keeps right now."""
        return self._engine.pending + self._arrivals.held

    @property
    def built(self) -> int:
        """How many distinct events have been generated so far (re-sends not counted)."""
        return self._engine.built

    @property
    def late(self) -> int:
        """How many events so far were held back to arrive late."""
        return self._arrivals.late

    @property
    def duplicates(self) -> int:
        """How many re-sends of already sent events were scheduled so far."""
        return self._arrivals.duplicates

    def truth(self) -> Iterator[CustomerTruth]:
        """The ground truth of every customer, in id order, as of the last event produced.

        Once the stream is exhausted, this is the truth at the end of the window.
        """
        engine = self._engine
        zones = engine.clock.zones
        now = engine.now if engine.pending else engine.end
        for customer in engine.customers:
            yield customer_truth(customer, self.business, zones[customer.zone].name, now)

    def recovered(self, customer_id: str, at: datetime) -> bool:
        """Tell the world an apology with a remedy reached a customer at `at`; whether it came in time to count.
        Only for a world generated with a `true_effect` (WorldError otherwise); a customer it does not know, or a
        time before the simulation's present, is a WorldError."""
        engine = self._engine
        if engine.effect is None:
            raise WorldError("true_effect", "this world was generated without one: it does not react to recovery")
        customer = self._by_id.get(customer_id)
        if customer is None:
            raise WorldError("customer", f"no customer {customer_id!r} in this world")
        # Complaints between `at` and the simulation's present have been made already: the effect starts now.
        return engine.recover(customer, (at - _EPOCH) // timedelta(milliseconds=1))

    def won_back(self, customer_id: str, at: datetime) -> bool:
        """Whether a timely recovery has won a customer back at `at` (for the 90 days after it): they neither
        complain nor leave, and speak of the company kindly. False in a world without a `true_effect`, and for a
        customer it does not know."""
        customer = self._by_id.get(customer_id)
        if self._engine.effect is None or customer is None:
            return False
        return customer.won_back((at - _EPOCH) // timedelta(milliseconds=1))

    def prevented(self) -> Iterator[tuple[str, datetime]]:
        """Each complaint a customer did not make because a recovery had won them back: who, and when they would
        have made it. With the complaints made, this is what the customers would have done without recovery."""
        effect = self._engine.effect
        for customer_id, at in () if effect is None else effect.prevented:
            yield customer_id, ms_to_datetime(at)

    @property
    def reacted(self) -> Reacted | None:
        """How customers reacted to recovery so far; None for a world without a `true_effect`."""
        effect = self._engine.effect
        if effect is None:
            return None
        return Reacted(effect.true_effect, effect.timely_count, effect.late, effect.won_back,
                       effect.complaints_prevented, effect.departures_prevented)  # fmt: skip

    @property
    def now(self) -> datetime:
        """The simulation's time: that of the last event generated."""
        return ms_to_datetime(self._engine.now)


def generate_world(
    business: str,
    *,
    customers: int,
    days: int,
    seed: int,
    start: datetime | None = None,
    late_share: float = 0.0,
    max_lateness: timedelta = DEFAULT_MAX_LATENESS,
    duplicate_share: float = 0.0,
    true_effect: float | None = None,
    timely: timedelta = DEFAULT_TIMELY,
) -> WorldStream:
    """Generate a business's sample world as a stream of CloudEvents envelopes (JSON-ready dicts).

    Events cover `days` from `start` (default 2025-01-01T00:00Z) and come in non-decreasing time
    order, except that a `late_share` of them arrives late, by at most `max_lateness`, and a
    `duplicate_share` is sent a second time (same source, id and content) within the same bound.
    `business` is shop, airline or car_service (car-service also accepted). With a `true_effect` (0 to 1), the
    world reacts to recovery: `WorldStream.recovered` tells it an apology with a remedy reached a customer, and one
    within `timely` of their last failure lowers their chance to complain and to leave by `true_effect`. Raises
    WorldError for arguments out of range.
    """
    name = parse_business(business)
    _check_count("customers", customers)
    _check_count("days", days)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise WorldError("seed", f"must be an integer, got {seed!r}")
    start = DEFAULT_START if start is None else start
    if start.tzinfo is None or start.utcoffset() is None:
        raise WorldError("start", "needs a time zone, e.g. datetime(2025, 1, 1, tzinfo=UTC)")
    _check_share("late_share", late_share)
    _check_share("duplicate_share", duplicate_share)
    if true_effect is not None:
        _check_share("true_effect", true_effect)
    if timely <= timedelta(0):
        raise WorldError("timely", f"must be positive, got {timely}")
    if max_lateness < timedelta(0):
        raise WorldError("max_lateness", f"must not be negative, got {max_lateness}")
    if late_share > 0 and max_lateness < timedelta(milliseconds=2):
        raise WorldError("max_lateness", "must be at least 2 ms when late_share is above 0")
    return WorldStream(
        name,
        customers=customers,
        days=days,
        seed=seed,
        start=start.astimezone(UTC),
        late_share=late_share,
        max_lateness=max_lateness,
        duplicate_share=duplicate_share,
        true_effect=true_effect,
        timely=timely,
    )


def _check_count(field: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorldError(field, f"must be a whole number of at least 1, got {value!r}")


def _check_share(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise WorldError(field, f"must be a share between 0 and 1, got {value!r}")
