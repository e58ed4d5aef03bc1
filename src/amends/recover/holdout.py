"""The holdout experiment: a share of the incidents that open proactive cases get nothing proactive, so that what
recovery does for customers is measured against what happens without it (docs/insights.md#holdout).

Each incident that opens a proactive case is drawn once, when it opens the case: a hash of the experiment's salt
and the incident's rule and key gives a number in [0, 1); below the share of its rule and severity, the case is
held out. The draw is written in `holdout_draws`, which refuses UPDATE and DELETE, and never drawn again. The
settings of the draw (salt, shares, ceiling) name a *period*; changing them starts a new period, analysed
apart.

A held-out case is recorded like any other but waits without an owner or due steps; no proactive message and no
remedy go out on it (`refuse_if_withheld`). When the customer raises it themselves (a complaint, an answer, a
contact staff record), it is worked like any case: the holdout withholds only what we would have done unasked.
An incident above the ceiling joining a held-out case lifts the holdout: a safety incident always gets its
apology. A held-out case nobody raised is closed after `holdout_close_after`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from amends.config import Settings
from amends.errors import Conflict
from amends.recover.actors import SYSTEM
from amends.recover.audit import audit
from amends.recover.cases import WITHHELD, Case, Status
from amends.recover.lock import recovery_lock
from amends.store import UnitOfWork, tables

__all__ = ["Draw", "HoldoutPlan", "close_silent", "draw_for", "record_draw", "refuse_if_withheld"]

_draws = tables.holdout_draws
_periods = tables.holdout_periods
_cases = tables.cases
_steps = tables.case_steps
_SCALE = float(2**64)


@dataclass(frozen=True)
class HoldoutPlan:
    """Who is held out: `share` of incidents by default, `shares` for some rules (`RULE`), rules at a severity
    (`RULE@3`) or any rule at a severity (`*@3`), the most specific first; none above `ceiling`."""

    share: float = 0.0
    shares: Mapping[str, float] = field(default_factory=dict)
    ceiling: int = 4
    salt: str = "amends"
    close_after: timedelta = timedelta(days=30)

    @classmethod
    def from_settings(cls, settings: Settings) -> HoldoutPlan:
        return cls(
            settings.holdout_share,
            dict(settings.holdout_shares),
            settings.holdout_ceiling,
            settings.holdout_salt,
            settings.holdout_close_after,
        )

    @property
    def running(self) -> bool:
        """Whether anyone can be held out."""
        return self.ceiling > 0 and (self.share > 0 or any(share > 0 for share in self.shares.values()))

    @property
    def period(self) -> str:
        """The period these settings define: the same settings, the same period."""
        return hashlib.sha256(json.dumps(self.described, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def described(self) -> dict[str, Any]:
        """The settings as recorded with the period; the salt only as a hash, so that what is shown of a period
        (the report, /v1/metrics) cannot be used to work out which future incidents will be held out."""
        salted = hashlib.sha256(("amends-holdout-salt\x1f" + self.salt).encode()).hexdigest()[:16]
        return {"share": self.share, "shares": dict(self.shares), "ceiling": self.ceiling, "salt_hash": salted}

    def share_for(self, rule_id: str, severity: int) -> float:
        """The share of this rule's incidents at this severity that are held out (0 above the ceiling)."""
        if severity > self.ceiling:
            return 0.0
        for name in (f"{rule_id}@{severity}", rule_id, f"*@{severity}"):
            if name in self.shares:
                return self.shares[name]
        return self.share

    def draw(self, rule_id: str, key: str) -> float:
        """The incident's number in [0, 1): the same incident and salt always give the same number."""
        digest = hashlib.sha256("\x1f".join((self.salt, rule_id, key)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / _SCALE


@dataclass(frozen=True, slots=True)
class Draw:
    share: float
    number: float

    @property
    def held_out(self) -> bool:
        return self.number < self.share


def draw_for(plan: HoldoutPlan, incident: sa.Row[Any]) -> Draw | None:
    """The incident's draw, or None when it cannot be held out (above the ceiling, or a share of 0): then it is not
    in the experiment."""
    share = plan.share_for(incident.rule_id, incident.severity)
    if share <= 0:
        return None
    return Draw(share, plan.draw(incident.rule_id, incident.key))


def record_draw(
    uow: UnitOfWork, plan: HoldoutPlan, incident: sa.Row[Any], case_id: int, draw: Draw, *, now: datetime
) -> None:
    """Record the draw of the incident that opened proactive case `case_id` (once: the table takes no update)."""
    period = plan.period
    if uow.execute(sa.select(_periods.c.id).where(_periods.c.id == period)).first() is None:
        uow.execute(sa.insert(_periods).values(id=period, plan=plan.described, started_at=now))
    uow.execute(
        sa.insert(_draws).values(
            incident_id=incident.id,
            case_id=case_id,
            customer_id=incident.customer_id,
            rule_id=incident.rule_id,
            severity=incident.severity,
            failure_at=incident.failure_at,
            period=period,
            share=draw.share,
            draw=draw.number,
            held_out=draw.held_out,
            drawn_at=now,
        )
    )


def refuse_if_withheld(case: Case, doing: str) -> None:
    """Conflict when the case is held out and the customer has not raised it (a complaint, negative feedback, a
    reply, or an inbound contact staff record): then nothing goes out on it, whoever asks."""
    if case.withheld:
        raise Conflict(
            f"{doing}: case {case.id} is in the holdout experiment; nothing goes out on it unless the customer "
            "raises it (record their contact first)"
        )


def close_silent(uow: UnitOfWork, plan: HoldoutPlan, *, now: datetime) -> int:
    """Close the held-out cases the customer never raised, `close_after` after they opened; how many."""
    quiet = sa.and_(_cases.c.status == Status.OPEN.value, WITHHELD, _cases.c.opened_at <= now - plan.close_after)
    if uow.execute(sa.select(_cases.c.id).where(quiet).limit(1)).first() is None:
        return 0
    recovery_lock(uow)
    ids = list(uow.execute(sa.select(_cases.c.id).where(quiet).order_by(_cases.c.id).limit(1_000)).scalars())
    resolution = "Held out of proactive recovery; the customer did not raise it."
    uow.execute(
        sa.update(_cases)
        .where(_cases.c.id.in_(ids))
        .values(status=Status.CLOSED.value, closed_at=now, resolution=resolution)  # never resolved: nothing was done
    )
    for case_id in ids:
        audit(uow, SYSTEM, "case.closed", f"case:{case_id}", at=now, reason="holdout")
    return len(ids)
