"""Errors of the events stage."""

from __future__ import annotations

from amends.errors import AmendsError, InvalidInput, TooLarge

__all__ = ["BatchTooLarge", "EventsError", "MalformedJSON"]


class EventsError(AmendsError):
    """Base of the events stage's errors."""


class MalformedJSON(EventsError, InvalidInput):
    """A body or line that is not JSON at all; says where parsing stopped."""

    def __init__(self, reason: str, *, line: int, column: int, position: int) -> None:
        super().__init__("body", f"malformed JSON at line {line}, column {column}: {reason}")
        self.line = line
        self.column = column
        self.position = position


class BatchTooLarge(EventsError, TooLarge):
    """A batch with more events than one request may carry."""
