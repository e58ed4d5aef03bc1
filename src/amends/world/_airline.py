"""The airline: passengers book round trips through the hub; flights are late, cancelled, or fine.

A trip is one booking of one or two legs each way. Its legs are flown one after another: each is
prepared twelve hours before departure (when a cancellation becomes known), departs and arrives; at the
hub a late arrival can miss the onward flight. Passengers are rebooked onto the next departure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

from amends.world._customers import Customer
from amends.world._engine import Engine, Envelope
from amends.world._ids import booking_ref
from amends.world._network import AIRPORTS, ZONES, Fate, Flight, Network, Route
from amends.world._reactions import Problem, Reactions
from amends.world._weights import Weights
from amends.world._zones import HOUR_MS, MINUTE_MS

__all__ = ["Airline"]

SOURCE = "https://airline.example.com"
_BOOKINGS = SOURCE + "/bookings"
_OPERATIONS = SOURCE + "/operations"
_BAGGAGE = SOURCE + "/baggage"

_HOMES = Weights(range(len(AIRPORTS)), [a.home_weight for a in AIRPORTS])
_DESTINATIONS = Weights(range(len(AIRPORTS)), [a.visit_weight for a in AIRPORTS])
_MEAN_GAP_DAYS = (90.0, 40.0, 14.0)
_BOOKING_HOURS = Weights(
    range(24), (0.5, 0.3, 0.2, 0.2, 0.2, 0.5, 1, 3, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 8, 8, 6, 2)
)
_CABINS = (
    Weights(("economy", "premium_economy", "business"), (92, 5, 3)),
    Weights(("economy", "premium_economy", "business"), (82, 10, 8)),
    Weights(("economy", "premium_economy", "business"), (60, 15, 25)),
)
_CABIN_PRICE = {"economy": 1.0, "premium_economy": 1.8, "business": 3.5}
_CONNECTION_MS = 60 * MINUTE_MS  # the shortest connection sold at the hub
_MISSED_MS = 30 * MINUTE_MS  # a passenger arriving later than this before the onward departure misses it
_PREPARE_MS = 12 * HOUR_MS  # when a flight's fate is known
_MAX_REBOOKINGS = 3
_BAG = 0.6
_BAG_LOST = 0.004
_BAG_DELAYED = 0.03
_BAG_DELAYED_AFTER_DISRUPTION = 0.20

_CANCELLATION = Problem("cancelled_flight", "cancellation", 0.20, 0.50, 0.25)
_MISSED = Problem("missed_connection", "missed_connection", 0.15, 0.40, 0.20)
_DELAYS = (  # by arrival delay of the journey: 3h, 6h, 12h
    Problem("long_delay", "delay", 0.15, 0.30, 0.15),
    Problem("long_delay", "delay", 0.25, 0.45, 0.25),
    Problem("long_delay", "delay", 0.35, 0.60, 0.35),
)
_DELAYED_BAG = Problem("delayed_bag", "baggage", 0.12, 0.60, 0.30)
_LOST_BAG = Problem("lost_bag", "baggage", 0.30, 0.90, 0.55)


@dataclass(slots=True)
class _Direction:
    legs: list[Flight]
    planned_arrival: int  # of the last leg when booked: delays are measured against it
    bag: bool
    bag_tag: str | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass(slots=True)
class _Trip:
    customer: Customer
    ref: str
    cabin: str
    directions: tuple[_Direction, _Direction]
    rebookings: int = 0


class Airline:
    """Passengers of a hub-and-spoke airline that sells in euros."""

    prefix = "P"
    source = SOURCE
    zones = ZONES
    quiet_topics = ("booking_change", "seat_selection", "invoice", "loyalty_miles")

    def __init__(self, engine: Engine, seed: str) -> None:
        self._engine = engine
        self._network = Network(engine.clock, seed)
        self._bookings = count(1).__next__
        self._bags = count(1).__next__
        self._reactions = Reactions(
            engine,
            key="booking_ref",
            source=SOURCE,
            quiet_topics=self.quiet_topics,
        )

    def home(self, customer: Customer) -> None:
        """Give a new passenger a home airport and schedule their first booking."""
        engine = self._engine
        customer.home = customer.zone = _HOMES.index(engine.rng.random())
        customer.mean_gap_days = _MEAN_GAP_DAYS[customer.tier]
        first = engine.next_visit(customer, engine.start, customer.satisfaction, _BOOKING_HOURS)
        engine.at(first, self._visit, customer)

    # Booking -----------------------------------------------------------------------------------------

    def _visit(self, now: int, customer: Customer) -> Envelope | None:
        engine = self._engine
        rng = engine.rng
        satisfaction = engine.stays(customer, now)
        if satisfaction is None:
            return None
        engine.at(engine.next_visit(customer, now, satisfaction, _BOOKING_HOURS), self._visit, customer)
        customer.episodes += 1
        home = customer.home
        while (destination := _destination(rng.random())) == home:
            pass
        lead_days = 1 + min(180, int(rng.expovariate(1 / 20)))
        out = self._legs(self._network.path(home, destination), engine.clock.day(home, now) + lead_days)
        stay_days = 2 + min(30, int(rng.expovariate(1 / 5)))
        back_day = engine.clock.day(destination, out[-1].arrival) + stay_days
        back = self._legs(self._network.path(destination, home), back_day)
        cabin = _CABINS[customer.tier].pick(rng.random())
        trip = _Trip(
            customer,
            booking_ref(self._bookings()),
            cabin,
            (
                _Direction(out, out[-1].arrival, rng.random() < _BAG),
                _Direction(back, back[-1].arrival, rng.random() < _BAG),
            ),
        )
        flights = out + back
        for i, flight in enumerate(flights[1:], start=1):
            engine.at(now + i * engine.uniform(200, 2000), self._confirm, (trip, flight, self._fare(flight, cabin)))
        engine.at(out[0].departure - _PREPARE_MS, self._prepare, (trip, 0, 0))
        return self._confirmation(now, trip, flights[0], self._fare(flights[0], cabin))

    def _legs(self, routes: tuple[Route, ...], day: int) -> list[Flight]:
        first = routes[0]
        legs = [self._network.flight(first, day, int(self._engine.rng.random() * len(first.slots)))]
        for route in routes[1:]:
            legs.append(self._network.next_flight(route, legs[-1].arrival + _CONNECTION_MS))
        return legs

    def _fare(self, flight: Flight, cabin: str) -> float:
        base = 49.0 + 0.09 * flight.route.distance_km
        return round(base * _CABIN_PRICE[cabin] * self._engine.rng.lognormvariate(0.0, 0.25), 2)

    def _confirm(self, now: int, arg: tuple[_Trip, Flight, float]) -> Envelope:
        return self._confirmation(now, *arg)

    def _confirmation(self, now: int, trip: _Trip, flight: Flight, fare: float) -> Envelope:
        stamp = self._engine.clock.stamp
        route = flight.route
        data = {
            "booking_ref": trip.ref,
            "flight_no": flight.flight_no,
            "origin": AIRPORTS[route.origin].code,
            "destination": AIRPORTS[route.destination].code,
            "scheduled_departure": stamp(route.origin, flight.departure),
            "scheduled_arrival": stamp(route.destination, flight.arrival),
            "fare": fare,
            "currency": "EUR",
            "cabin": trip.cabin,
        }
        customer = trip.customer
        return self._engine.emit(now, customer.zone, "booking.confirmed", _BOOKINGS, customer, data)

    def _rebook(self, now: int, trip: _Trip, d: int, i: int, not_before: int) -> None:
        """Move leg i (and any onward leg it no longer connects with) to later flights, and confirm them."""
        engine = self._engine
        legs = trip.directions[d].legs
        trip.rebookings += 1
        legs[i] = self._network.next_flight(legs[i].route, not_before)
        confirm_at = now + engine.uniform(MINUTE_MS, 10 * MINUTE_MS)
        engine.at(confirm_at, self._confirm, (trip, legs[i], 0.0))
        for j in range(i + 1, len(legs)):
            if legs[j].departure < legs[j - 1].arrival + _CONNECTION_MS:
                legs[j] = self._network.next_flight(legs[j].route, legs[j - 1].arrival + _CONNECTION_MS)
                engine.at(confirm_at + j, self._confirm, (trip, legs[j], 0.0))
        engine.at(max(confirm_at + MINUTE_MS, legs[i].departure - _PREPARE_MS), self._prepare, (trip, d, i))

    # Flying ------------------------------------------------------------------------------------------

    def _prepare(self, now: int, arg: tuple[_Trip, int, int]) -> None:
        trip, d, i = arg
        engine = self._engine
        flight = trip.directions[d].legs[i]
        if i == 0 and flight.departure < now + HOUR_MS:  # a disrupted outbound ran into the flight back
            self._rebook(now, trip, d, i, now + 3 * HOUR_MS)
            return
        fate = self._network.fate(flight)
        if fate.cancelled and trip.rebookings < _MAX_REBOOKINGS:
            notice = flight.departure - engine.uniform(30 * MINUTE_MS, _PREPARE_MS - 30 * MINUTE_MS)
            engine.at(notice, self._cancel, (trip, d, i, fate.reason))
            return
        if i == 0 and trip.directions[d].bag:
            engine.at(flight.departure - engine.uniform(60 * MINUTE_MS, 150 * MINUTE_MS), self._check_bag, (trip, d))
        engine.at(flight.departure + fate.departure_delay * MINUTE_MS, self._depart, (trip, d, i, fate))

    def _cancel(self, now: int, arg: tuple[_Trip, int, int, str]) -> Envelope:
        trip, d, i, reason = arg
        customer = trip.customer
        flight = trip.directions[d].legs[i]
        customer.suffer(now, _CANCELLATION.kind, _CANCELLATION.severity)
        trip.directions[d].problems.append(_CANCELLATION)
        self._rebook(now, trip, d, i, max(flight.departure, now) + 2 * HOUR_MS)
        data = {"booking_ref": trip.ref, "flight_no": flight.flight_no, "reason": reason}
        return self._engine.emit(now, flight.route.origin, "flight.cancelled", _OPERATIONS, customer, data)

    def _check_bag(self, now: int, arg: tuple[_Trip, int]) -> Envelope:
        trip, d = arg
        engine = self._engine
        direction = trip.directions[d]
        last = direction.legs[-1]
        direction.bag_tag = f"{self._bags():010d}"
        data = {
            "bag_tag": direction.bag_tag,
            "booking_ref": trip.ref,
            "flight_no": last.flight_no,
            "expected_by": engine.clock.stamp(last.route.destination, last.arrival + HOUR_MS),
        }
        origin = direction.legs[0].route.origin
        return engine.emit(now, origin, "bag.checked", _BAGGAGE, trip.customer, data)

    def _depart(self, now: int, arg: tuple[_Trip, int, int, Fate]) -> Envelope:
        trip, d, i, fate = arg
        flight = trip.directions[d].legs[i]
        self._engine.at(flight.arrival + fate.arrival_delay * MINUTE_MS, self._arrive, arg)
        data = {"booking_ref": trip.ref, "flight_no": flight.flight_no, "delay_minutes": fate.departure_delay}
        return self._engine.emit(now, flight.route.origin, "flight.departed", _OPERATIONS, trip.customer, data)

    def _arrive(self, now: int, arg: tuple[_Trip, int, int, Fate]) -> Envelope:
        trip, d, i, fate = arg
        engine = self._engine
        legs = trip.directions[d].legs
        flight = legs[i]
        if i + 1 < len(legs):
            onward = legs[i + 1]
            onward_fate = self._network.fate(onward)
            leaves = onward.departure + onward_fate.departure_delay * MINUTE_MS
            if not onward_fate.cancelled and now + _MISSED_MS > leaves:
                engine.at(now + engine.uniform(2 * MINUTE_MS, 15 * MINUTE_MS), self._miss, (trip, d, i))
            else:
                engine.at(now, self._prepare, (trip, d, i + 1))
        else:
            self._end_direction(now, trip, d)
        data = {
            "booking_ref": trip.ref,
            "flight_no": flight.flight_no,
            "delay_minutes": fate.arrival_delay,
            "scheduled_arrival": engine.clock.stamp(flight.route.destination, flight.arrival),
        }
        return engine.emit(now, flight.route.destination, "flight.arrived", _OPERATIONS, trip.customer, data)

    def _miss(self, now: int, arg: tuple[_Trip, int, int]) -> Envelope:
        trip, d, i = arg
        customer = trip.customer
        legs = trip.directions[d].legs
        missed = legs[i + 1]
        customer.suffer(now, _MISSED.kind, _MISSED.severity)
        trip.directions[d].problems.append(_MISSED)
        self._rebook(now, trip, d, i + 1, now + _CONNECTION_MS)
        data = {"booking_ref": trip.ref, "flight_no": legs[i].flight_no, "next_flight_no": missed.flight_no}
        return self._engine.emit(now, legs[i].route.destination, "connection.missed", _OPERATIONS, customer, data)

    def _end_direction(self, now: int, trip: _Trip, d: int) -> None:
        engine = self._engine
        rng = engine.rng
        customer = trip.customer
        direction = trip.directions[d]
        problems = direction.problems
        late_minutes = (now - direction.planned_arrival) // MINUTE_MS
        if late_minutes >= 180:
            delay = _DELAYS[0 if late_minutes < 360 else 1 if late_minutes < 720 else 2]
            customer.suffer(now, delay.kind, delay.severity)
            problems.append(delay)
        if direction.bag_tag is not None:
            u = rng.random()
            if u < _BAG_LOST:
                customer.suffer(now, _LOST_BAG.kind, _LOST_BAG.severity)
                problems.append(_LOST_BAG)
            elif u < _BAG_LOST + (_BAG_DELAYED_AFTER_DISRUPTION if problems else _BAG_DELAYED):
                customer.suffer(now, _DELAYED_BAG.kind, _DELAYED_BAG.severity)
                problems.append(_DELAYED_BAG)
                engine.at(now + engine.uniform(20 * HOUR_MS, 72 * HOUR_MS), self._deliver_bag, (trip, d))
            else:
                engine.at(now + engine.uniform(10 * MINUTE_MS, 40 * MINUTE_MS), self._deliver_bag, (trip, d))
        if problems:
            self._reactions.after(now, customer, trip.ref, problems)
        if d == 0:
            back = trip.directions[1].legs[0]
            engine.at(max(now, back.departure - _PREPARE_MS), self._prepare, (trip, 1, 0))
            return
        failed = bool(problems or trip.directions[0].problems)
        if not failed:
            customer.enjoy(now)
            self._reactions.after(now, customer, trip.ref, [])
        self._reactions.rate(now, customer, trip.ref, failed)

    def _deliver_bag(self, now: int, arg: tuple[_Trip, int]) -> Envelope:
        trip, d = arg
        direction = trip.directions[d]
        data = {"bag_tag": direction.bag_tag, "booking_ref": trip.ref}
        zone = direction.legs[-1].route.destination
        return self._engine.emit(now, zone, "bag.delivered", _BAGGAGE, trip.customer, data)


def _destination(u: float) -> int:
    return _DESTINATIONS.index(u)
