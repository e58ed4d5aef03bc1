"""The airline's network: a hub in Frankfurt, spokes across Europe and beyond, a daily timetable.

A flight (route, local day, slot) has one fate shared by everyone on board: a departure delay, an
arrival delay, or a cancellation. The fate is a hash of the seed and the flight, so it takes no memory
and is the same whichever passenger asks first.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from amends.world._zones import MINUTE_MS, Clock, Zone

__all__ = ["AIRPORTS", "HUB", "ZONES", "Airport", "Fate", "Flight", "Network", "Route"]


@dataclass(frozen=True, slots=True)
class Airport:
    """An airport; its zone is the world zone with the same index."""

    code: str
    latitude: float
    longitude: float
    home_weight: float  # how many passengers live near it
    visit_weight: float  # how often it is a destination


ZONES = (
    Zone("Europe/Berlin", 60, "eu"),
    Zone("Europe/London", 0, "eu"),
    Zone("Europe/Paris", 60, "eu"),
    Zone("Europe/Amsterdam", 60, "eu"),
    Zone("Europe/Madrid", 60, "eu"),
    Zone("Europe/Lisbon", 0, "eu"),
    Zone("Europe/Rome", 60, "eu"),
    Zone("Europe/Athens", 120, "eu"),
    Zone("Europe/Helsinki", 120, "eu"),
    Zone("Europe/Dublin", 0, "eu"),
    Zone("Europe/Vienna", 60, "eu"),
    Zone("Europe/Istanbul", 180),
    Zone("Asia/Dubai", 240),
    Zone("Asia/Kolkata", 330),
    Zone("Asia/Singapore", 480),
    Zone("Asia/Tokyo", 540),
    Zone("America/New_York", -300, "us"),
    Zone("America/Chicago", -360, "us"),
    Zone("America/Los_Angeles", -480, "us"),
    Zone("America/Sao_Paulo", -180),
)
AIRPORTS = (
    Airport("FRA", 50.03, 8.57, 25, 6),
    Airport("LHR", 51.47, -0.45, 8, 10),
    Airport("CDG", 49.01, 2.55, 8, 10),
    Airport("AMS", 52.31, 4.76, 5, 6),
    Airport("MAD", 40.49, -3.57, 6, 7),
    Airport("LIS", 38.77, -9.13, 3, 6),
    Airport("FCO", 41.80, 12.25, 6, 8),
    Airport("ATH", 37.94, 23.94, 3, 6),
    Airport("HEL", 60.32, 24.96, 2, 3),
    Airport("DUB", 53.42, -6.27, 3, 4),
    Airport("VIE", 48.11, 16.57, 4, 5),
    Airport("IST", 41.26, 28.74, 3, 5),
    Airport("DXB", 25.25, 55.36, 2, 4),
    Airport("DEL", 28.56, 77.10, 2, 3),
    Airport("SIN", 1.36, 103.99, 2, 3),
    Airport("NRT", 35.77, 140.39, 2, 3),
    Airport("JFK", 40.64, -73.78, 6, 7),
    Airport("ORD", 41.97, -87.91, 3, 3),
    Airport("SFO", 37.62, -122.38, 3, 4),
    Airport("GRU", -23.43, -46.47, 2, 3),
)
HUB = 0

# Departure delay in minutes: (cumulative share, low, high). Most flights leave within a quarter of an
# hour; the tail is long. Assumed shares: 2.5% of flights 180+ minutes late, 0.8% 360+, 0.25% 720+.
_DELAY_BANDS = (
    (0.62, 0, 15),
    (0.88, 15, 60),
    (0.975, 60, 180),
    (0.992, 180, 360),
    (0.9975, 360, 720),
    (1.0, 720, 1500),
)
_CANCELLED = 0.015
_CANCEL_REASONS = ("weather", "technical", "crew", "air_traffic_control", "strike")
_SLOTS = {3: (7 * 60 + 5, 12 * 60 + 40, 18 * 60 + 20), 2: (8 * 60 + 15, 17 * 60 + 45), 1: (13 * 60 + 30,)}
_LONG_HAUL_RETURN = (22 * 60 + 10,)  # long-haul flights back to the hub leave in the evening
_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Route:
    """A one-way route with its daily departures (local minutes after midnight at the origin)."""

    index: int
    origin: int
    destination: int
    distance_km: float
    block_ms: int
    slots: tuple[int, ...]
    flight_nos: tuple[str, ...]  # one per slot, unique across the network


@dataclass(frozen=True, slots=True)
class Flight:
    """One departure of a route on a local day, with its scheduled times (UTC milliseconds)."""

    route: Route
    day: int
    slot: int
    departure: int
    arrival: int
    flight_no: str


@dataclass(frozen=True, slots=True)
class Fate:
    """What happens to a flight: delays in minutes (arrivals may be early), or a cancellation."""

    cancelled: bool
    reason: str
    departure_delay: int
    arrival_delay: int


def _distance_km(a: Airport, b: Airport) -> float:
    p1, p2 = math.radians(a.latitude), math.radians(b.latitude)
    dp, dl = p2 - p1, math.radians(b.longitude - a.longitude)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _mix(x: int) -> int:
    # splitmix64's finaliser: a fast, well-spread hash of a 64-bit integer.
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class Network:
    """Routes between the hub and every other airport, and the fate of each flight."""

    __slots__ = ("_clock", "_key", "_routes")

    def __init__(self, clock: Clock, seed: str) -> None:
        self._clock = clock
        self._key = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
        self._routes: dict[tuple[int, int], Route] = {}
        for spoke in range(1, len(AIRPORTS)):
            km = _distance_km(AIRPORTS[HUB], AIRPORTS[spoke])
            block = round((km / 820.0 * 60 + 35) / 5) * 5 * MINUTE_MS
            count = 3 if km < 1500 else 2 if km < 4000 else 1
            for origin, destination in ((HUB, spoke), (spoke, HUB)):
                slots = _SLOTS[count] if count > 1 or origin == HUB else _LONG_HAUL_RETURN
                jitter = 5 * (len(self._routes) % 7)
                index = len(self._routes)
                self._routes[origin, destination] = Route(
                    index,
                    origin,
                    destination,
                    km,
                    block,
                    tuple((s + jitter) * MINUTE_MS for s in slots),
                    tuple(f"EX{100 + 4 * index + slot}" for slot in range(len(slots))),
                )

    def path(self, origin: int, destination: int) -> tuple[Route, ...]:
        """The routes flown from one airport to another: direct to or from the hub, else through it."""
        if HUB in (origin, destination):
            return (self._routes[origin, destination],)
        return self._routes[origin, HUB], self._routes[HUB, destination]

    def flight(self, route: Route, day: int, slot: int) -> Flight:
        """The scheduled flight of a route's daily departure on a local day at its origin."""
        departure = self._clock.utc(route.origin, day, route.slots[slot])
        return Flight(route, day, slot, departure, departure + route.block_ms, route.flight_nos[slot])

    def next_flight(self, route: Route, not_before: int) -> Flight:
        """The first scheduled flight of a route leaving at or after a time."""
        day = self._clock.day(route.origin, not_before)
        while True:
            for slot in range(len(route.slots)):
                flight = self.flight(route, day, slot)
                if flight.departure >= not_before:
                    return flight
            day += 1

    def fate(self, flight: Flight) -> Fate:
        """The flight's delays or cancellation: the same for every passenger who asks."""
        h1 = _mix(self._key ^ (flight.route.index << 40) ^ (flight.slot << 36) ^ (flight.day & 0xFFFFFFFFF))
        h2 = _mix(h1)
        h3 = _mix(h2)
        u_delay, u_cancel, u_arrival = h1 / 2.0**64, h2 / 2.0**64, h3 / 2.0**64
        if u_cancel < _CANCELLED:
            return Fate(True, _CANCEL_REASONS[int(u_cancel / _CANCELLED * len(_CANCEL_REASONS))], 0, 0)
        below = 0.0
        departure = 0
        for share, low, high in _DELAY_BANDS:
            if u_delay < share:
                departure = low + int((high - low) * (u_delay - below) / (share - below))
                break
            below = share
        arrival = max(-25, departure + int(u_arrival * 35) - 20)
        return Fate(False, "", departure, arrival)
