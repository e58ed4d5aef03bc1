"""Customers: who they are, their latent satisfaction, and the ground truth they accumulate.

A Customer is mutable simulation state, owned by one world. Counters are updated only when the event
they describe is emitted, so the ground truth always agrees with the events written.
"""

from __future__ import annotations

from amends.world._satisfaction import recovered
from amends.world._zones import DAY_MS

__all__ = ["TIERS", "Customer"]

TIERS = ("bronze", "silver", "gold")


class Customer:
    """One customer of one business, with the state the behavioural model needs."""

    __slots__ = (
        "baseline",
        "churned_at",
        "complaints",
        "contacts",
        "episodes",
        "failures",
        "felt_at",
        "first_complaint_at",
        "first_failure_at",
        "home",
        "id",
        "last_activity_at",
        "last_failure_at",
        "mean_gap_days",
        "ratings",
        "recovered_failure_at",
        "satisfaction",
        "start_satisfaction",
        "tier",
        "vehicles",
        "won_back_until",
        "zone",
    )

    def __init__(
        self, id: str, tier: int, zone: int, baseline: float, mean_gap_days: float, now: int, home: int = 0
    ) -> None:
        self.id = id
        self.tier = tier
        self.zone = zone
        self.home = home  # the home airport's index, for passengers
        self.vehicles: tuple[str, ...] = ()
        self.baseline = baseline
        self.satisfaction = baseline
        self.start_satisfaction = baseline
        self.felt_at = now
        self.mean_gap_days = mean_gap_days
        self.episodes = 0
        self.failures: dict[str, int] | None = None  # made on the first failure: most customers have none
        self.first_failure_at: int | None = None
        self.last_failure_at: int | None = None
        self.recovered_failure_at: int | None = None  # the failure the last timely recovery answered
        self.won_back_until: int | None = None  # a recovery won them back: no complaint, no leaving, until then
        self.contacts = 0
        self.complaints = 0
        self.first_complaint_at: int | None = None
        self.ratings: list[int] | None = None  # stars 1..5 given, counted; made on the first rating
        self.churned_at: int | None = None
        self.last_activity_at: int | None = None

    def feel(self, now: int) -> float:
        """Satisfaction now, after drifting back towards the baseline since it was last touched."""
        if now > self.felt_at:
            elapsed = (now - self.felt_at) / DAY_MS
            self.satisfaction = recovered(self.satisfaction, self.baseline, elapsed)
            self.felt_at = now
        return self.satisfaction

    def suffer(self, now: int, kind: str, severity: float) -> float:
        """Record a failure of some kind and lower satisfaction by its severity; return the new value."""
        satisfaction = max(0.0, self.feel(now) - severity)
        self.satisfaction = satisfaction
        if self.failures is None:
            self.failures = {}
            self.first_failure_at = now
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self.last_failure_at = now
        return satisfaction

    def won_back(self, now: int) -> bool:
        """Whether a timely recovery has won the customer back for now (see `Engine.recover`)."""
        return self.won_back_until is not None and now <= self.won_back_until

    def rated(self, stars: int) -> None:
        """Count a rating given."""
        if self.ratings is None:
            self.ratings = [0, 0, 0, 0, 0]
        self.ratings[stars - 1] += 1

    def enjoy(self, now: int) -> None:
        """A smooth experience: satisfaction moves a little towards 1."""
        self.satisfaction = self.feel(now) + 0.05 * (1.0 - self.satisfaction)
