"""What both evaluators say about an event in a finding, written once so that they say it alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from amends.detect.conditions import FieldPath
from amends.events import Event

__all__ = ["correlation_key", "event_ref", "instant_text"]


def instant_text(value: datetime) -> str:
    """An instant as RFC 3339 in UTC with microseconds: `2025-03-01T08:00:00.000000Z`."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_ref(event: Event) -> dict[str, Any]:
    """Enough to find the event again, and when it happened."""
    return {"id": event.id, "source": event.source, "type": event.type, "time": instant_text(event.time)}


def correlation_key(path: FieldPath, event: Event) -> str | None:
    """The value a rule correlates events by: text, or a whole number written as text; else None (skipped)."""
    value = path.read(event)
    if isinstance(value, str):
        return value if value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
