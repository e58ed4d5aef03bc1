"""How well customers who write are answered: per channel and per ISO week of arrival, the response rate, the
median and 90th-percentile time to respond, and the share answered within the SLA. Spam is left out; feedback
not answered yet counts as not answered (and, once past due, as not within the SLA)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from amends.errors import InvalidInput
from amends.store import UnitOfWork, tables

__all__ = ["ResponseMeasures", "response_measures"]

_f = tables.feedback


@dataclass(frozen=True, slots=True)
class ResponseMeasures:
    week: str  # ISO week of arrival: 2026-W47
    channel: str
    received: int  # needing an answer (spam left out)
    answered: int
    response_rate: float | None
    median_hours: float | None  # time to respond, of those answered
    p90_hours: float | None
    within_sla: float | None  # answered by due_at, over those received whose due time has passed or are answered
    overdue: int  # not answered and past due now


def response_measures(uow: UnitOfWork, *, since: datetime, until: datetime, now: datetime) -> list[ResponseMeasures]:
    """The measures of feedback received in [since, until), by week and channel, oldest week first."""
    if until <= since:
        raise InvalidInput("until", "must be after since")
    if until - since > timedelta(days=3 * 366):
        raise InvalidInput("since", "at most three years at a time")
    rows = uow.execute(
        sa.select(_f.c.channel, _f.c.received_at, _f.c.due_at, _f.c.responded_at).where(
            _f.c.received_at >= since, _f.c.received_at < until, _f.c.due_at.is_not(None)
        )
    ).all()
    groups: dict[tuple[str, str], list[tuple[datetime, datetime, datetime | None]]] = defaultdict(list)
    for row in rows:
        year, week, _ = row.received_at.isocalendar()
        groups[(f"{year}-W{week:02d}", row.channel)].append((row.received_at, row.due_at, row.responded_at))
    out = []
    for (week, channel), items in sorted(groups.items()):
        answered = [(r, d, a) for r, d, a in items if a is not None]
        hours = sorted((a - r).total_seconds() / 3600 for r, _d, a in answered)
        decided = [(d, a) for _r, d, a in items if a is not None or d < now]
        within = sum(1 for d, a in decided if a is not None and a <= d)
        out.append(
            ResponseMeasures(
                week=week,
                channel=channel,
                received=len(items),
                answered=len(answered),
                response_rate=len(answered) / len(items),
                median_hours=statistics.median(hours) if hours else None,
                p90_hours=_quantile(hours, 0.9) if hours else None,
                within_sla=within / len(decided) if decided else None,
                overdue=sum(1 for _r, d, a in items if a is None and d < now),
            )
        )
    return out


def _quantile(ordered: list[float], q: float) -> float:
    """The q-quantile by linear interpolation between closest ranks (as numpy's default)."""
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
