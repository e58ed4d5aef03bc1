"""API keys: `amends_<id>_<secret>`. Only the id and a SHA-256 of the secret are stored.

A key's secret is 256 random bits, so a fast hash is the right one (a slow password hash would add
nothing but latency); comparison is constant-time. Revoked keys stay, for the record. A key may expire
(`expires_at`): a staff member's always does (recover/staff.py), an integration's when it is made so.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from amends.errors import Conflict, InvalidInput, NotFound, Unauthorized
from amends.store import UnitOfWork, tables

__all__ = ["ApiKey", "Scope", "authenticate", "create_key", "list_keys", "revoke_key"]

_keys = tables.api_keys
_PREFIX = "amends"
_KEY = re.compile(rf"^{_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


class Scope(StrEnum):
    """What a key may do. Integrations get only what they need."""

    EVENTS_WRITE = "events:write"
    CUSTOMERS_READ = "customers:read"
    INCIDENTS_READ = "incidents:read"
    CASES_READ = "cases:read"
    COMPLAINTS_WRITE = "complaints:write"
    LEDGER_READ = "ledger:read"
    MESSAGES_READ = "messages:read"  # the outbox: every message, dead letters included
    MESSAGES_WRITE = "messages:write"  # put a dead message back in the queue
    CARDS_WRITE = "cards:write"  # the hand-written card queue: print, mark written and posted
    INBOUND_WRITE = "inbound:write"  # customers' replies, posted by an inbound-mail provider
    OPT_OUTS_WRITE = "opt_outs:write"  # record a customer's wish to get no more messages
    FEEDBACK_WRITE = "feedback:write"  # post what customers wrote: an email, a review, a note of a call
    FEEDBACK_READ = "feedback:read"  # the feedback inbox, the unanswered queue, the suggestions, the measures
    FEEDBACK_ANSWER = "feedback:answer"  # answer feedback, correct its triage, release or quarantine spam
    SUGGESTIONS_WRITE = "suggestions:write"  # move a suggestion along (planned, done, declined), merge two
    # Create a feedback request and read its link and QR code (to print on an invoice); the link is a credential.
    FEEDBACK_REQUESTS_WRITE = "feedback_requests:write"
    METRICS_READ = "metrics:read"  # the report's figures and the holdout experiment's estimates, in aggregate


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: never its secret."""

    id: str
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None
    staff_id: str | None = None  # a staff member's own key: it acts as them, with their role's rights
    expires_at: datetime | None = None  # refused from then on; None: until revoked

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def create_key(
    uow: UnitOfWork,
    name: str,
    scopes: Iterable[Scope],
    *,
    now: datetime,
    staff_id: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; return it and the full key text, which is shown this once and never again.

    A key with `staff_id` is that staff member's own: its rights come from their role when it is used, and
    `scopes` must be empty. An integration key (no `staff_id`) needs at least one scope.
    """
    if not _NAME.match(name):
        raise InvalidInput("name", "1-100 letters, digits, spaces, dots, dashes or underscores")
    chosen = frozenset(scopes)
    if staff_id is None and not chosen:
        raise InvalidInput("scopes", "a key needs at least one scope")
    if staff_id is not None and chosen:
        raise InvalidInput("scopes", "a staff member's key has the rights of their role, not scopes of its own")
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("expires_at", "must be in the future")
    if uow.execute(sa.select(_keys.c.id).where(_keys.c.name == name, _keys.c.revoked_at.is_(None))).first():
        raise Conflict(f"a key named {name!r} is in use; revoke it first")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    uow.execute(
        sa.insert(_keys).values(
            id=key_id,
            name=name,
            key_hash=_digest(secret),
            scopes=sorted(chosen),
            created_at=now,
            revoked_at=None,
            staff_id=staff_id,
            expires_at=expires_at,
        )
    )
    return ApiKey(key_id, name, chosen, now, None, staff_id, expires_at), f"{_PREFIX}_{key_id}_{secret}"


def list_keys(uow: UnitOfWork, *, staff_id: str | None = None, in_use: bool = False) -> list[ApiKey]:
    """Every key, newest first, revoked ones included; or only a staff member's, or only those not revoked."""
    query = sa.select(_keys).order_by(_keys.c.created_at.desc())
    if staff_id is not None:
        query = query.where(_keys.c.staff_id == staff_id)
    if in_use:
        query = query.where(_keys.c.revoked_at.is_(None))
    rows = uow.execute(query).all()
    return [_from_row(row) for row in rows]


def revoke_key(uow: UnitOfWork, name_or_id: str, *, now: datetime) -> ApiKey:
    """Revoke the active key with this name or id; requests with it are refused from now on."""
    row = uow.execute(
        sa.select(_keys).where(
            sa.or_(_keys.c.name == name_or_id, _keys.c.id == name_or_id), _keys.c.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        raise NotFound(f"no active key named {name_or_id!r}")
    uow.execute(sa.update(_keys).where(_keys.c.id == row.id).values(revoked_at=now))
    return replace(_from_row(row), revoked_at=now)


def authenticate(uow: UnitOfWork, presented: str | None, *, now: datetime | None = None) -> ApiKey:
    """The active key the caller presented; Unauthorized if it is missing, malformed, unknown, revoked or
    expired."""
    if not presented:
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    match = _KEY.match(presented)
    row = None
    if match is not None:
        row = uow.execute(sa.select(_keys).where(_keys.c.id == match.group(1))).first()
    # Compare against a dummy digest when the id is unknown, so timing does not tell which ids exist.
    stored = row.key_hash if row is not None else _digest("")
    given = _digest(match.group(2)) if match is not None else _digest(presented)
    if row is None or not hmac.compare_digest(stored, given):
        raise Unauthorized("the API key is not valid")
    if row.revoked_at is not None:
        raise Unauthorized("the API key has been revoked")
    key = _from_row(row)
    if key.is_expired(now or datetime.now(UTC)):
        raise Unauthorized(f"the API key expired at {key.expires_at:%Y-%m-%d %H:%M} UTC; make a new one")
    return key


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _scopes(values: Iterable[str]) -> frozenset[Scope]:
    return frozenset(Scope(v) for v in values)


def _from_row(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(row.id, row.name, _scopes(row.scopes), row.created_at, row.revoked_at, row.staff_id, row.expires_at)
