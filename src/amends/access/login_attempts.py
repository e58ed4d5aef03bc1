"""Failed sign-in attempts, counted in the database, so that every process of a deployment counts the same ones: a
limit kept in each process's memory would give whoever guesses passwords one allowance per process behind a load
balancer.

A failure counts against the client's address and against the login name tried; either over the limit within the
window refuses the next attempt, with the right password too. The name is kept only as a keyed hash (HMAC with the
secret key, like the audit log's), since people type passwords into the name field. Rows older than the window go
as new ones are written, so the table holds at most a window's failures.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

import limits
import sqlalchemy as sa

from amends.store import UnitOfWork, tables

__all__ = ["LoginLimit", "name_key"]

_failures = tables.login_failures
_MAX_ADDRESS = 64  # an IPv6 address with a zone fits


def name_key(secret: bytes, login: str) -> str:
    """The hash a login name is kept under: the same for the same name however it is written (case, spaces)."""
    name = login.strip().lower()[:320]
    return hmac.new(secret, b"login name\0" + name.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class LoginLimit:
    """At most `attempts` failures per address, and per name, within `window`."""

    attempts: int
    window: timedelta

    @classmethod
    def parse(cls, rate: str) -> LoginLimit:
        """From a rate like '10/minute' (the `limits` notation the settings check)."""
        item = limits.parse(rate)
        return cls(item.amount, timedelta(seconds=item.get_expiry()))

    def allows(self, uow: UnitOfWork, address: str, name: str, *, now: datetime) -> bool:
        """Whether an attempt may be tried now: neither the address nor the name (`name_key`) is at the limit."""
        since = now - self.window
        counted = sa.select(sa.func.count()).select_from(_failures).where(_failures.c.at > since)
        by_address = uow.execute(counted.where(_failures.c.address == address[:_MAX_ADDRESS])).scalar_one()
        if by_address >= self.attempts:
            return False
        return int(uow.execute(counted.where(_failures.c.name_key == name)).scalar_one()) < self.attempts

    def failed(self, uow: UnitOfWork, address: str, name: str, *, now: datetime) -> None:
        """Count a failed attempt (a success counts against neither), and forget those the window has passed."""
        uow.execute(sa.delete(_failures).where(_failures.c.at <= now - self.window))
        uow.execute(sa.insert(_failures).values(address=address[:_MAX_ADDRESS], name_key=name, at=now))
