"""Durations as rule files and settings write them: `90s`, `15m`, `36h`, `5d`, `2w`, or several at once (`1d12h`)."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_PART = re.compile(r"(\d{1,6})([wdhms])")
_WHOLE = re.compile(r"(?:\d{1,6}[wdhms])+")


def parse_duration(text: str, *, zero: bool = False) -> timedelta:
    """`5d` → 5 days (`0s` too, with `zero`). Raises ValueError with a sentence a rule author can act on."""
    compact = text.strip()
    if not _WHOLE.fullmatch(compact):
        raise ValueError(f"expected a duration like '30m', '36h', '7d' or '1d12h', got {text!r}")
    total = timedelta()
    for amount, unit in _PART.findall(compact):
        total += int(amount) * _UNITS[unit]
    if total <= timedelta() and not (zero and total == timedelta()):
        raise ValueError(f"a duration must be longer than zero, got {text!r}")
    return total


def format_duration(value: timedelta) -> str:
    """The shortest text `parse_duration` reads back as `value` (whole seconds)."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
