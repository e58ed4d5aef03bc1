"""The one exception tree of amends.

    AmendsError
     ├── InvalidInput   input we refuse: names the field and the reason
     │    └── TooLarge  input over a configured limit
     ├── NotFound       the thing asked for does not exist
     ├── Conflict       the request contradicts what is stored
     ├── Forbidden      the caller may not do this
     ├── Unauthorized   the caller did not prove who they are
     └── Unavailable    a service we depend on (the database) cannot be reached; retry later

The core raises these; only the edges (web/, cli.py) turn them into HTTP statuses and exit codes.
"""

from __future__ import annotations

__all__ = [
    "AmendsError",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
]


class AmendsError(Exception):
    """Base of every error amends raises on purpose.

    `shown` is what may be said to whoever made the request (an HTTP answer, a console page, a readiness probe):
    the message itself, unless the message holds words for the log and the command line only (a driver's hosts,
    users, tables and constraints) and a `shown` was given in its place."""

    _shown: str | None = None

    def __init__(self, *args: object, shown: str | None = None) -> None:
        super().__init__(*args)
        self._shown = shown

    @property
    def shown(self) -> str:
        return str(self) if self._shown is None else self._shown


class InvalidInput(AmendsError):
    """Input we refuse: says which field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class TooLarge(InvalidInput):
    """Input over a configured limit (a batch with too many events, a body too big)."""


class NotFound(AmendsError):
    """The thing asked for does not exist."""


class Conflict(AmendsError):
    """The request contradicts what is stored (a database constraint's words, when it is one, are not `shown`)."""


class Forbidden(AmendsError):
    """The caller is known but may not do this."""


class Unauthorized(AmendsError):
    """The caller did not prove who they are (no credentials, or revoked ones)."""


class Unavailable(AmendsError):
    """A service amends depends on cannot be reached; nothing was changed, and a retry may succeed. The driver's
    words (hosts, users) stay out of what is `shown`."""
