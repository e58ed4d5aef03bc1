"""Business hours and the response SLA: when an answer to feedback is due.

The SLA is business time: `1d` is one business day (as long as the working day), `4h` four working hours,
counted only on working days inside the working hours, in the business's time zone, holidays skipped.
Feedback that arrives outside the hours starts its clock when they open.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amends.durations import parse_clock, parse_duration, parse_time_span
from amends.errors import InvalidInput

__all__ = ["BusinessHours", "ResponseSla"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*([A-Za-z]{3})\s*(?:-\s*([A-Za-z]{3}))?\s+(\S+)\s*$")
_MAX_DAYS = 3660  # ten years of calendar: a schedule that never opens is refused long before


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Working days (Monday 0 … Sunday 6), the daily opening hours, the zone they are in, and holidays."""

    days: frozenset[int]
    opens: time
    closes: time | None  # None: at midnight, the end of the day (`24:00`)
    zone: ZoneInfo
    holidays: frozenset[date] = frozenset()

    @classmethod
    def parse(
        cls, text: str, zone: str, holidays: Iterable[str] = (), *, field: str = "business_hours"
    ) -> BusinessHours:
        """`Mon-Fri 09:00-17:00` in `Europe/Berlin` (`Mon-Sun 00:00-24:00`: round the clock), holidays as ISO
        dates. Raises InvalidInput naming `field` (or `business_timezone`, `business_holidays`)."""
        match = _HOURS.match(text)
        if match is None:
            raise InvalidInput(field, f"expected days and hours such as 'Mon-Fri 09:00-17:00', got {text!r}")
        first, last, span = match.group(1).lower(), (match.group(2) or match.group(1)).lower(), match.group(3)
        if first not in _DAYS or last not in _DAYS:
            raise InvalidInput(field, f"days are Mon, Tue, Wed, Thu, Fri, Sat, Sun; got {text!r}")
        start, end = _DAYS.index(first), _DAYS.index(last)
        days = frozenset((start + n) % 7 for n in range((end - start) % 7 + 1))
        closes: time | None
        try:
            if span.endswith("-24:00"):  # open until midnight, the end of the day
                opens, closes = parse_clock(span.removesuffix("-24:00")), None
            else:
                opens, closes = parse_time_span(span)
        except ValueError as exc:
            raise InvalidInput(field, str(exc)) from None
        if closes is not None and closes <= opens:
            raise InvalidInput(field, "working hours must close after they open on the same day, e.g. 09:00-17:00")
        try:
            where = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput("business_timezone", f"{zone!r} is not a time zone the tz database knows") from None
        off: set[date] = set()
        for day in holidays:
            try:
                off.add(date.fromisoformat(day.strip()))
            except ValueError:
                raise InvalidInput("business_holidays", f"expected dates such as 2026-12-25, got {day!r}") from None
        return cls(days, opens, closes, where, frozenset(off))

    @property
    def day_length(self) -> timedelta:
        today = date(2000, 1, 3)
        return self._closing(today, None) - datetime.combine(today, self.opens)

    def _closing(self, day: date, zone: ZoneInfo | None) -> datetime:
        if self.closes is None:
            return datetime.combine(day + timedelta(days=1), time(), zone)
        return datetime.combine(day, self.closes, zone)

    def add(self, start: datetime, work: timedelta) -> datetime:
        """The moment `work` of business time after `start` (an aware datetime), in UTC."""
        if start.tzinfo is None:
            raise ValueError("start needs a time zone")
        local = start.astimezone(self.zone)
        day = local.date()
        left = work
        for _ in range(_MAX_DAYS):
            if day.weekday() in self.days and day not in self.holidays:
                opens = datetime.combine(day, self.opens, self.zone)
                closes = self._closing(day, self.zone)
                begin = max(opens, local)
                if begin < closes:
                    available = closes - begin
                    if left <= available:
                        return (begin + left).astimezone(start.tzinfo)
                    left -= available
            day += timedelta(days=1)
        raise ValueError("the business hours never open")


@dataclass(frozen=True, slots=True)
class ResponseSla:
    """How long an answer may take, in business time."""

    hours: BusinessHours
    work: timedelta  # of business time

    @classmethod
    def parse(cls, sla: str, hours: BusinessHours) -> ResponseSla:
        """`1d` (one business day, the length of the working day), `4h`, `1d4h`. Raises InvalidInput naming
        `response_sla`."""
        try:
            calendar = parse_duration(sla)
        except ValueError as exc:
            raise InvalidInput("response_sla", str(exc)) from None
        days, rest = divmod(calendar, timedelta(days=1))  # a week is seven business days
        return cls(hours, days * hours.day_length + rest)

    def due(self, received_at: datetime) -> datetime:
        return self.hours.add(received_at, self.work)
