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

__all__ = ["RatingMeasures", "ResponseMeasures", "rating_measures", "response_measures"]

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


@dataclass(frozen=True, slots=True)
class RatingMeasures:
    """The ratings customers gave in one ISO week, on each scale: CSAT as the share of 4 and 5 (of 1 to 5), NPS as
    the share of promoters (9, 10) less the share of detractors (0 to 6), in points, and effort as its mean."""

    week: str
    csat: float | None
    csat_answers: int
    nps: float | None
    nps_answers: int
    effort: float | None
    effort_answers: int


def response_measures(
    uow: UnitOfWork, *, since: datetime, until: datetime, now: datetime, by_channel: bool = True
) -> list[ResponseMeasures]:
    """The measures of feedback received in [since, until), by week and channel (or every channel together,
    called "all"), oldest week first."""
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
        channel = row.channel if by_channel else "all"
        groups[(f"{year}-W{week:02d}", channel)].append((row.received_at, row.due_at, row.responded_at))
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


def rating_measures(uow: UnitOfWork, *, since: datetime, until: datetime) -> list[RatingMeasures]:
    """CSAT, NPS and effort of the ratings given in [since, until), by ISO week, oldest first; spam left out."""
    if until <= since:
        raise InvalidInput("until", "must be after since")
    rows = uow.execute(
        sa.select(_f.c.received_at, _f.c.rating, _f.c.scale).where(
            _f.c.received_at >= since, _f.c.received_at < until, _f.c.rating.is_not(None), _f.c.spam.is_(False)
        )
    ).all()
    weeks: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        year, week, _ = row.received_at.isocalendar()
        weeks[f"{year}-W{week:02d}"][row.scale or ""].append(int(row.rating))
    out = []
    for week, scales in sorted(weeks.items()):
        csat, nps, effort = scales.get("csat", []), scales.get("nps", []), scales.get("effort", [])
        out.append(
            RatingMeasures(
                week=week,
                csat=sum(1 for r in csat if r >= 4) / len(csat) if csat else None,
                csat_answers=len(csat),
                nps=100 * (sum(1 for r in nps if r >= 9) - sum(1 for r in nps if r <= 6)) / len(nps) if nps else None,
                nps_answers=len(nps),
                effort=statistics.fmean(effort) if effort else None,
                effort_answers=len(effort),
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
