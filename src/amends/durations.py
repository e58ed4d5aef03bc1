"""Durations as rule files and settings write them: `90s`, `15m`, `36h`, `5d`, `2w`, or several at once (`1d12h`);
and daily spans of local time (`21:00-08:00`)."""

from __future__ import annotations

import re
from datetime import time, timedelta

__all__ = ["MAX_DURATION", "format_duration", "parse_clock", "parse_duration", "parse_time_span"]

_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_SECONDS = {unit: int(size.total_seconds()) for unit, size in _UNITS.items()}
MAX_DURATION = timedelta(days=36_500)
_MAX_SECONDS = int(MAX_DURATION.total_seconds())
_PART = re.compile(r"(\d{1,6})([wdhms])")
_WHOLE = re.compile(r"(?:\d{1,6}[wdhms])+")
_CLOCK = r"([01]?\d|2[0-3]):([0-5]\d)"
_SPAN = re.compile(rf"\s*{_CLOCK}\s*-\s*{_CLOCK}\s*")
_ONE_CLOCK = re.compile(rf"\s*{_CLOCK}\s*")


def parse_clock(text: str) -> time:
    """`09:30` → 09:30, a time of day. Raises ValueError saying what was expected."""
    match = _ONE_CLOCK.fullmatch(text)
    if match is None:
        raise ValueError(f"expected HH:MM such as 09:30, got {text!r}")
    return time(int(match[1]), int(match[2]))


def parse_time_span(text: str) -> tuple[time, time]:
    """`21:00-08:00` → (21:00, 08:00): a daily span of local time, which may run past midnight. Raises
    ValueError saying what was expected."""
    match = _SPAN.fullmatch(text)
    if match is None:
        raise ValueError(f"expected HH:MM-HH:MM such as 21:00-08:00, got {text!r}")
    start, end = time(int(match[1]), int(match[2])), time(int(match[3]), int(match[4]))
    if start == end:
        raise ValueError("start and end are the same; leave it empty for none")
    return start, end


def parse_duration(text: str, *, zero: bool = False) -> timedelta:
    """`5d` → 5 days (`0s` too, with `zero`), at most MAX_DURATION. Raises ValueError with a sentence a rule author
    can act on."""
    compact = text.strip()
    if not _WHOLE.fullmatch(compact):
        raise ValueError(f"expected a duration like '30m', '36h', '7d' or '1d12h', got {text!r}")
    seconds = sum(int(amount) * _SECONDS[unit] for amount, unit in _PART.findall(compact))
    if seconds > _MAX_SECONDS:  # timedelta itself overflows at 999,999,999 days; times plus durations much sooner
        raise ValueError(f"a duration must be at most {MAX_DURATION.days}d (about a hundred years), got {text!r}")
    if seconds <= 0 and not (zero and seconds == 0):
        raise ValueError(f"a duration must be longer than zero, got {text!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest text `parse_duration` reads back as `value` (whole seconds)."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
