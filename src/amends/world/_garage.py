"""The car service: drivers in the US bring their cars in for maintenance, repairs, tyres, inspections.

Job life: opened at drop-off -> started after a wait at the desk -> completed (on time or late), or
never completed. A job done wrong brings the same vehicle back within 30 days (rework).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

from amends.world._customers import Customer
from amends.world._engine import Engine, Envelope
from amends.world._reactions import Problem, Reactions
from amends.world._weights import Weights
from amends.world._zones import DAY_MS, HOUR_MS, MINUTE_MS, Zone

__all__ = ["Garage"]

SOURCE = "https://garage.example.com"
_WORKSHOP = SOURCE + "/workshop"

ZONES = (
    Zone("America/New_York", -300, "us"),
    Zone("America/Chicago", -360, "us"),
    Zone("America/Denver", -420, "us"),
    Zone("America/Phoenix", -420),
    Zone("America/Los_Angeles", -480, "us"),
)
_HOMES = Weights(range(len(ZONES)), (35, 25, 10, 7, 23))
_MEAN_GAP_DAYS = (200.0, 120.0, 60.0)
_OPEN_HOURS = Weights(range(12), (0, 0, 0, 0, 0, 0, 0, 3, 6, 5, 3, 2))  # drop-offs from 07:00 to noon
_VEHICLES = Weights((1, 2, 3), (65, 28, 7))
_KINDS = Weights(("maintenance", "repair", "tyres", "inspection"), (45, 25, 15, 15))
# by kind: (share of customers who wait on site, hours of work (low, high), invoice log-mean, log-sd, rework)
_JOB = {
    "maintenance": (0.40, (1.5, 4.0), 5.4, 0.4, 0.05),
    "repair": (0.05, (3.0, 8.0), 6.5, 0.7, 0.10),
    "tyres": (0.80, (0.75, 2.0), 6.3, 0.3, 0.03),
    "inspection": (0.90, (0.5, 1.5), 4.5, 0.25, 0.01),
}
_WAIT_BANDS = ((0.70, 2, 20), (0.92, 20, 60), (1.0, 60, 150))  # minutes at the desk: 8% wait an hour or more
_NEVER_COMPLETED = 0.015
_LATE = 0.12
_CLOSING = 17 * HOUR_MS + 30 * MINUTE_MS

_LONG_WAIT = (
    Problem("long_wait", "waiting_time", 0.08, 0.15, 0.05),
    Problem("long_wait", "waiting_time", 0.12, 0.25, 0.1),
)
_LATE_COMPLETION = (
    Problem("late_completion", "late_completion", 0.10, 0.35, 0.15),
    Problem("late_completion", "late_completion", 0.18, 0.55, 0.30),
)
_NOT_COMPLETED = Problem("not_completed", "not_completed", 0.30, 0.90, 0.50)
_REWORK = Problem("rework", "repair_quality", 0.20, 0.50, 0.30)


@dataclass(slots=True)
class _Job:
    customer: Customer
    id: str
    vehicle: str
    kind: str
    opened: int
    promised_by: int
    waits_on_site: bool
    rework: bool
    problems: list[Problem] = field(default_factory=list)


class Garage:
    """Drivers of a chain of car service centres across US time zones, invoiced in dollars."""

    prefix = "D"
    source = SOURCE
    zones = ZONES
    quiet_topics = ("appointment", "invoice", "price_quote", "warranty")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._jobs = count(1).__next__
        self._reactions = Reactions(
            engine,
            key="job_id",
            source=SOURCE,
            quiet_topics=self.quiet_topics,
        )

    def home(self, customer: Customer) -> None:
        """Give a new driver a home zone and vehicles, and schedule their first visit."""
        engine = self._engine
        rng = engine.rng
        customer.zone = _HOMES.index(rng.random())
        customer.mean_gap_days = _MEAN_GAP_DAYS[customer.tier]
        number = customer.id.partition("-")[2]
        customer.vehicles = tuple(f"V-{number}-{k}" for k in range(1, _VEHICLES.pick(rng.random()) + 1))
        engine.at(self._next_visit(customer, engine.start, customer.satisfaction), self._visit, customer)

    def _next_visit(self, customer: Customer, now: int, satisfaction: float) -> int:
        time = self._engine.next_visit(customer, now, satisfaction, _OPEN_HOURS)
        return time + DAY_MS if self._engine.clock.day(customer.zone, time) % 7 == 3 else time  # closed Sundays

    def _visit(self, now: int, customer: Customer) -> Envelope | None:
        engine = self._engine
        rng = engine.rng
        satisfaction = engine.stays(customer, now)
        if satisfaction is None:
            return None
        engine.at(self._next_visit(customer, now, satisfaction), self._visit, customer)
        vehicle = customer.vehicles[int(rng.random() * len(customer.vehicles))]
        return self._open(now, customer, vehicle, _KINDS.pick(rng.random()), rework=False)

    def _open(self, now: int, customer: Customer, vehicle: str, kind: str, *, rework: bool) -> Envelope:
        engine = self._engine
        rng = engine.rng
        customer.episodes += 1
        zone = customer.zone
        on_site, (low, high), *_ = _JOB[kind]
        waits = rng.random() < on_site
        work = int((low + (high - low) * rng.random()) * HOUR_MS)
        day = engine.clock.day(zone, now)
        if kind == "repair":
            promised = engine.clock.utc(zone, day + 1 + int(rng.random() * 3), _CLOSING)
        elif waits:
            promised = now + work + 45 * MINUTE_MS
        else:
            promised = engine.clock.utc(zone, day, _CLOSING)
            if promised < now + work + HOUR_MS:
                promised = engine.clock.utc(zone, day + 1, _CLOSING)
        job = _Job(customer, f"J-{self._jobs():08d}", vehicle, kind, now, promised, waits, rework)
        u = rng.random()
        below = 0.0
        wait = 0
        for share, low_minutes, high_minutes in _WAIT_BANDS:
            if u < share:
                wait = low_minutes + int((high_minutes - low_minutes) * (u - below) / (share - below))
                break
            below = share
        engine.at(now + wait * MINUTE_MS + engine.uniform(0, MINUTE_MS), self._start, (job, wait))
        data = {
            "job_id": job.id,
            "vehicle_id": vehicle,
            "kind": kind,
            "promised_by": engine.clock.stamp(zone, promised),
        }
        return engine.emit(now, zone, "service.opened", _WORKSHOP, customer, data)

    def _start(self, now: int, arg: tuple[_Job, int]) -> Envelope:
        job, wait = arg
        engine = self._engine
        rng = engine.rng
        customer = job.customer
        if wait >= 60:
            long_wait = _LONG_WAIT[wait >= 90]
            customer.suffer(now, long_wait.kind, long_wait.severity)
            job.problems.append(long_wait)
        if rng.random() < _NEVER_COMPLETED:
            engine.at(job.promised_by + engine.uniform(4 * HOUR_MS, DAY_MS), self._abandon, job)
        else:
            if rng.random() < _LATE:
                u = rng.random()
                if u < 0.6:
                    done = job.promised_by + engine.uniform(30 * MINUTE_MS, 3 * HOUR_MS)
                elif u < 0.9:
                    done = job.promised_by + DAY_MS + engine.uniform(-2 * HOUR_MS, 2 * HOUR_MS)
                else:
                    done = job.promised_by + engine.uniform(2 * DAY_MS, 3 * DAY_MS)
            else:
                earliest = now + 20 * MINUTE_MS
                done = earliest + int((0.5 + 0.5 * rng.random()) * max(0, job.promised_by - earliest))
            engine.at(done, self._complete, job)
        data = {"job_id": job.id, "vehicle_id": job.vehicle, "wait_minutes": wait}
        return engine.emit(now, customer.zone, "service.started", _WORKSHOP, customer, data)

    def _complete(self, now: int, job: _Job) -> Envelope:
        engine = self._engine
        rng = engine.rng
        customer = job.customer
        if now > job.promised_by:
            late = _LATE_COMPLETION[now - job.promised_by >= DAY_MS]
            customer.suffer(now, late.kind, late.severity)
            job.problems.append(late)
        if not job.problems:
            customer.enjoy(now)
        _, _, log_mean, log_sd, rework_share = _JOB[job.kind]
        if rng.random() < rework_share * (0.5 if job.rework else 1.0):
            engine.at(now + engine.uniform(DAY_MS, 28 * DAY_MS), self._come_back, job)
        self._reactions.after(now, customer, job.id, job.problems)
        self._reactions.rate(now, customer, job.id, bool(job.problems))
        invoice = 0.0 if job.rework else round(rng.lognormvariate(log_mean, log_sd), 2)
        data: dict[str, object] = {"job_id": job.id, "vehicle_id": job.vehicle}
        if job.waits_on_site:
            data["wait_minutes_total"] = (now - job.opened) // MINUTE_MS
        data["invoice_total"] = invoice
        data["currency"] = "USD"
        return engine.emit(now, customer.zone, "service.completed", _WORKSHOP, customer, data)

    def _abandon(self, now: int, job: _Job) -> None:
        customer = job.customer
        customer.suffer(now, _NOT_COMPLETED.kind, _NOT_COMPLETED.severity)
        self._reactions.after(now, customer, job.id, [*job.problems, _NOT_COMPLETED])
        self._reactions.rate(now, customer, job.id, True)

    def _come_back(self, now: int, job: _Job) -> Envelope | None:
        # The job was done wrong and the driver noticed. One who has left for good goes elsewhere.
        engine = self._engine
        customer = job.customer
        customer.suffer(now, _REWORK.kind, _REWORK.severity)
        self._reactions.after(now, customer, job.id, [_REWORK])
        if customer.churned_at is not None:
            return None
        zone = customer.zone
        time_of_day = _OPEN_HOURS.index(engine.rng.random()) * HOUR_MS + engine.uniform(0, HOUR_MS)
        day = engine.clock.day(zone, now)
        while (opened := engine.clock.utc(zone, day, time_of_day)) < now or day % 7 == 3:
            day += 1
        engine.at(opened, self._reopen, job)
        return None

    def _reopen(self, now: int, job: _Job) -> Envelope:
        return self._open(now, job.customer, job.vehicle, "repair", rework=True)
