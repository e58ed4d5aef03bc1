"""The behavioural model: a customer's latent satisfaction, and what it makes them do.

Every number here is an assumption chosen to look plausible, not a measured statistic; docs/world.md
lists them. Satisfaction lies in [0, 1]. Failures lower it at once; with time it drifts back towards
the customer's own baseline; a smooth experience nudges it up. Lower satisfaction makes a customer
more likely to leave, to complain, to call, and to give a low rating.
"""

from __future__ import annotations

import math

__all__ = [
    "BASELINE",
    "CONTACT_WITHOUT_PROBLEM",
    "RECOVERY_DAYS",
    "churn_probability",
    "complaint_probability",
    "contact_probability",
    "gap_factor",
    "rate_probability",
    "rating",
    "recovered",
]

BASELINE = (0.6, 0.9)
"""Each customer's own satisfaction when nothing has gone wrong lately: uniform in this range."""

RECOVERY_DAYS = 90.0
"""Time constant of the drift back to baseline: after 90 days, about 37% of a drop is left."""

CONTACT_WITHOUT_PROBLEM = 0.03
"""Share of smooth experiences that still lead to a question for support."""


def recovered(satisfaction: float, baseline: float, elapsed_days: float) -> float:
    """Satisfaction after some days without news: an exponential drift back to the baseline."""
    return baseline + (satisfaction - baseline) * math.exp(-elapsed_days / RECOVERY_DAYS)


def churn_probability(satisfaction: float) -> float:
    """The chance that a customer, when their next purchase or trip or visit is due, never comes back."""
    return 0.005 + 1.2 * max(0.0, 0.7 - satisfaction) ** 2


def gap_factor(satisfaction: float) -> float:
    """How much longer than usual an unhappy customer waits before coming back (1 when content)."""
    return 1.0 + 2.0 * max(0.0, 0.65 - satisfaction)


def contact_probability(base: float, satisfaction: float) -> float:
    """The chance of contacting support after a problem whose own rate is `base`."""
    return min(0.95, base * (1.4 - satisfaction))


def complaint_probability(severity: float, satisfaction: float) -> float:
    """The chance of a formal complaint after a problem: a few per cent, more when severe and unhappy."""
    return min(0.5, (0.01 + 0.1 * (1.0 - satisfaction) ** 2) * (0.5 + 2.5 * severity))


def rate_probability(failed: bool, satisfaction: float) -> float:
    """The chance of leaving a rating: the very pleased and the let-down rate most."""
    return 0.12 + 0.3 * abs(satisfaction - 0.6) + (0.15 if failed else 0.0)


def rating(satisfaction: float, failed: bool, noise: float) -> int:
    """The stars (1..5) given; `noise` is a standard normal draw."""
    stars = 1.0 + 4.5 * satisfaction - (1.2 if failed else 0.0) + 0.6 * noise
    return min(5, max(1, round(stars)))
