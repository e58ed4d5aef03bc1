"""Home time zones and the clock that stamps event times in them.

Times inside the world are integers: milliseconds since the Unix epoch, UTC. They become RFC 3339 text
with the UTC offset in force in a zone only when an event is written. The daylight-saving rules are
written out here (the EU's and the US's, as in force since 2007) rather than read from the system's
tz database, so that the same seed gives the same bytes on every machine.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

__all__ = ["DAY_MS", "HOUR_MS", "MINUTE_MS", "Clock", "Zone", "ms_to_datetime"]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Zone:
    """An IANA zone as the world uses it: its standard offset and its daylight-saving rule, if any."""

    name: str
    standard_minutes: int
    rule: Literal["eu", "us"] | None = None


def ms_to_datetime(ms: int) -> datetime:
    """The aware UTC datetime of a world time."""
    return _EPOCH + timedelta(milliseconds=ms)


def _last_sunday(year: int, month: int) -> date:
    last = (date(year + (month == 12), month % 12 + 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def _nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def _day_ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_MS


def _summer(zone: Zone, year: int) -> tuple[int, int]:
    """When daylight saving starts and ends in a year, in UTC milliseconds."""
    std = zone.standard_minutes * MINUTE_MS
    if zone.rule == "eu":  # the whole EU (and the UK) switches at 01:00 UTC
        return _day_ms(_last_sunday(year, 3)) + HOUR_MS, _day_ms(_last_sunday(year, 10)) + HOUR_MS
    # The US switches at 02:00 local time: standard time in March, daylight time in November.
    return (
        _day_ms(_nth_sunday(year, 3, 2)) + 2 * HOUR_MS - std,
        _day_ms(_nth_sunday(year, 11, 1)) + 2 * HOUR_MS - std - HOUR_MS,
    )


def _suffix(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


_CACHED_HOURS = 24 * 366
_TWO = tuple(f"{n:02d}" for n in range(60))
_THREE = tuple(f"{n:03d}" for n in range(1000))


class Clock:
    """Offsets of a fixed set of zones over a span of years, and RFC 3339 stamps in them.

    Zones are referred to by their index in the tuple given, which keeps the hot path to list lookups.
    """

    __slots__ = ("_hours", "_offsets", "_starts", "_suffixes", "zones")

    def __init__(self, zones: tuple[Zone, ...], first_year: int, last_year: int) -> None:
        self.zones = zones
        self._starts: list[list[int]] = []
        self._offsets: list[list[int]] = []
        self._suffixes: list[list[str]] = []
        self._hours: dict[int, str] = {}  # local hour -> "2025-03-01T09:", for the hours lately stamped
        for zone in zones:
            std = zone.standard_minutes
            starts, offsets = [-(2**62)], [std]
            if zone.rule is not None:
                for year in range(first_year, last_year + 1):
                    begin, end = _summer(zone, year)
                    starts += [begin, end]
                    offsets += [std + 60, std]
            self._starts.append(starts)
            self._offsets.append([minutes * MINUTE_MS for minutes in offsets])
            self._suffixes.append([_suffix(minutes) for minutes in offsets])

    def offset(self, zone: int, utc: int) -> int:
        """The zone's UTC offset at a time, in milliseconds."""
        return self._offsets[zone][bisect_right(self._starts[zone], utc) - 1]

    def local(self, zone: int, utc: int) -> int:
        """The local wall-clock time of a UTC time, as milliseconds on the local epoch."""
        return utc + self._offsets[zone][bisect_right(self._starts[zone], utc) - 1]

    def day(self, zone: int, utc: int) -> int:
        """The local calendar day of a UTC time, counted from 1970-01-01."""
        return (utc + self._offsets[zone][bisect_right(self._starts[zone], utc) - 1]) // DAY_MS

    def utc(self, zone: int, day: int, time_of_day: int) -> int:
        """The UTC time of a wall-clock time on a local day (in a gap or overlap: the offset before it)."""
        local = day * DAY_MS + time_of_day
        offsets = self._offsets[zone]
        return local - offsets[bisect_right(self._starts[zone], local - offsets[0]) - 1]

    def stamp(self, zone: int, utc: int) -> str:
        """RFC 3339 with milliseconds and the zone's offset, e.g. 2025-03-01T09:12:44.120+01:00."""
        index = bisect_right(self._starts[zone], utc) - 1
        hour, ms = divmod(utc + self._offsets[zone][index], HOUR_MS)
        prefix = self._hours.get(hour)
        if prefix is None:
            if len(self._hours) >= _CACHED_HOURS:  # stamps cluster around the simulation's time: start afresh
                self._hours.clear()
            day, hour_of_day = divmod(hour, 24)
            prefix = f"{date(1970, 1, 1) + timedelta(days=day)}T{hour_of_day:02d}:"
            self._hours[hour] = prefix
        minute, ms = divmod(ms, MINUTE_MS)
        second, ms = divmod(ms, 1000)
        return f"{prefix}{_TWO[minute]}:{_TWO[second]}.{_THREE[ms]}{self._suffixes[zone][index]}"
