"""The audit log: who decided what, when and from where. Append-only (the database refuses changes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from amends.recover.actors import Actor
from amends.store import UnitOfWork, tables

__all__ = ["AuditEntry", "audit", "list_audit"]

_log = tables.audit_log


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    origin: str | None
    details: Mapping[str, Any]


def audit(uow: UnitOfWork, actor: Actor, action: str, target: str, *, at: datetime, **details: Any) -> None:
    """Record one decision, in the transaction that makes it."""
    uow.execute(
        sa.insert(_log).values(
            at=at, actor=actor.label, action=action, target=target, origin=actor.origin, details=details
        )
    )


def list_audit(uow: UnitOfWork, *, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
    """The newest entries first, for one target or all."""
    query = sa.select(_log).order_by(_log.c.id.desc()).limit(limit)
    if target is not None:
        query = query.where(_log.c.target == target)
    return [AuditEntry(r.id, r.at, r.actor, r.action, r.target, r.origin, r.details) for r in uow.execute(query)]
