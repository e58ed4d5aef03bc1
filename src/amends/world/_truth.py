"""The ground truth: what really happened to each customer, which the events only partly show.

One record per customer, read from the simulation's state. It agrees with the events by construction:
counters move only when the event they count is emitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from amends.world._business import Business
from amends.world._customers import TIERS, Customer
from amends.world._satisfaction import recovered
from amends.world._zones import DAY_MS, ms_to_datetime

__all__ = ["CustomerTruth", "customer_truth"]


@dataclass(frozen=True, slots=True)
class CustomerTruth:
    """What happened to one customer. Times are aware UTC datetimes; satisfaction lies in [0, 1].

    `failures` counts each kind of failure the customer experienced (whether or not any event shows it,
    like a bag that never arrives); `ratings` counts the ratings given, from 1 star to 5; `churned_at` is
    when the customer decided not to come back (their next purchase, trip or visit never happened).
    """

    customer: str
    business: Business
    tier: str
    timezone: str
    satisfaction_start: float
    satisfaction_end: float
    episodes: int
    failures: dict[str, int]
    failures_total: int
    first_failure_at: datetime | None
    contacts: int
    complained: bool
    complaints: int
    first_complaint_at: datetime | None
    churned: bool
    churned_at: datetime | None
    ratings: tuple[int, int, int, int, int]
    last_activity_at: datetime | None


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else ms_to_datetime(ms)


def customer_truth(customer: Customer, business: Business, timezone: str, now: int) -> CustomerTruth:
    """The ground truth of one customer as of `now` (UTC milliseconds), without changing their state."""
    satisfaction = recovered(customer.satisfaction, customer.baseline, max(0, now - customer.felt_at) / DAY_MS)
    failures = dict(sorted((customer.failures or {}).items()))
    one, two, three, four, five = customer.ratings or (0, 0, 0, 0, 0)
    return CustomerTruth(
        customer=customer.id,
        business=business,
        tier=TIERS[customer.tier],
        timezone=timezone,
        satisfaction_start=round(customer.start_satisfaction, 4),
        satisfaction_end=round(satisfaction, 4),
        episodes=customer.episodes,
        failures=failures,
        failures_total=sum(failures.values()),
        first_failure_at=_at(customer.first_failure_at),
        contacts=customer.contacts,
        complained=customer.complaints > 0,
        complaints=customer.complaints,
        first_complaint_at=_at(customer.first_complaint_at),
        churned=customer.churned_at is not None,
        churned_at=_at(customer.churned_at),
        ratings=(one, two, three, four, five),
        last_activity_at=_at(customer.last_activity_at),
    )
