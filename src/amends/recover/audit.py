"""The audit log: who decided what, when and from where. Append-only (the database refuses changes), and
tamper-evident: each entry carries a hash of its content and of the entry before it, so that an entry changed,
removed or slipped in behind the database's back breaks the chain from there on (docs/security.md#audit-log).

An entry is written when the transaction that makes the decision commits, under a lock held only for that
commit's tail: the chain has one order, the order of the ids, whatever number of processes write to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from amends.recover.actors import Actor
from amends.store import UnitOfWork, tables

__all__ = ["GENESIS", "AuditEntry", "ChainCheck", "audit", "check_chain", "entry_hash", "iter_audit", "list_audit"]

_log = tables.audit_log
GENESIS = "0" * 64  # the "hash before" of the first entry
_KEY = int.from_bytes(hashlib.blake2b(b"amends.audit", digest_size=8).digest()) - (1 << 63)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    origin: str | None
    details: Mapping[str, Any]
    hash: str | None = None


def entry_hash(previous: str, at: datetime, actor: str, action: str, target: str, origin: str | None,
               details: Mapping[str, Any]) -> str:  # fmt: skip
    """SHA-256, in hex, of the hash before and the entry's content as canonical JSON (keys sorted, no spaces,
    UTF-8; the instant in UTC with microseconds). docs/security.md shows how to check it without amends."""
    content = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "origin": origin,
        "details": details,
    }
    text = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(previous.encode("ascii") + b"\n" + text).hexdigest()


def audit(uow: UnitOfWork, actor: Actor, action: str, target: str, *, at: datetime, **details: Any) -> None:
    """Record one decision, in the transaction that makes it (written when it commits)."""
    # Stored as the database gives JSON back, so that the hash written is the hash a reader recomputes.
    stored = _as_stored(orjson.loads(orjson.dumps(details)))
    entry = {"at": at, "actor": actor.label, "action": action, "target": target, "origin": actor.origin,
             "details": stored}  # fmt: skip
    uow.staged("audit_log", _append).append(entry)


def _as_stored(value: Any) -> Any:
    """A whole float as an integer: PostgreSQL keeps JSON numbers as numeric and gives 1e16 back as
    10000000000000000 and -0.0 as 0, which read back as integers (up to 64 bits; beyond, as floats again); 2.0 and 2
    are then one number on both engines."""
    if isinstance(value, float) and value.is_integer() and -(2**63) <= value < 2**64:
        return int(value)
    if isinstance(value, list):
        return [_as_stored(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_stored(item) for key, item in value.items()}
    return value


def _append(uow: UnitOfWork, entries: list[dict[str, Any]]) -> None:
    """Chain the unit's entries onto the newest stored one, holding the chain's lock until the commit."""
    if uow.dialect == "postgresql":
        uow.execute(sa.select(sa.func.pg_advisory_xact_lock(_KEY)))
    else:  # SQLite: take the database's one write lock (a write that changes nothing) before reading the head
        cursors = tables.recover_cursors
        uow.execute(cursors.update().where(cursors.c.name == "").values(name=cursors.c.name))
    previous = uow.execute(sa.select(_log.c.hash).order_by(_log.c.id.desc()).limit(1)).scalar_one_or_none()
    previous = previous or GENESIS
    for entry in entries:
        entry["hash"] = previous = entry_hash(previous, **entry)
    uow.execute(sa.insert(_log), entries)


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(row.id, row.at, row.actor, row.action, row.target, row.origin, row.details, row.hash)


def list_audit(uow: UnitOfWork, *, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
    """The newest entries first, for one target or all."""
    query = sa.select(_log).order_by(_log.c.id.desc()).limit(limit)
    if target is not None:
        query = query.where(_log.c.target == target)
    return [_entry(row) for row in uow.execute(query)]


def iter_audit(uow: UnitOfWork, *, since: datetime | None = None, batch: int = 5_000) -> Iterator[AuditEntry]:
    """Every entry in the chain's order (from `since` on), read in batches of `batch` rows."""
    after = 0
    while True:
        query = sa.select(_log).where(_log.c.id > after).order_by(_log.c.id).limit(batch)
        if since is not None:
            query = query.where(_log.c.at >= since)
        rows = uow.execute(query).all()
        for row in rows:
            yield _entry(row)
        if len(rows) < batch:
            return
        after = rows[-1].id


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What walking the chain found: how many entries hold, the newest hash (to keep elsewhere: with it, a chain
    cut short is found too), and the first entry that does not hold, if any, with why (a `reason` without
    `broken_at`: the kept hash is gone)."""

    entries: int
    head: str
    broken_at: int | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.reason is None


def check_chain(uow: UnitOfWork, *, head: str | None = None) -> ChainCheck:
    """Recompute every entry's hash in order. `head`, a hash kept from an earlier check, must still be in the
    chain (otherwise the entries up to it were removed or changed)."""
    previous, count, seen_head = GENESIS, 0, head is None
    for entry in iter_audit(uow):
        expected = entry_hash(previous, entry.at, entry.actor, entry.action, entry.target, entry.origin,
                              entry.details)  # fmt: skip
        if entry.hash != expected:
            why = "it has no hash" if entry.hash is None else "its hash does not match its content and the one before"
            return ChainCheck(count, previous, entry.id, why)
        previous, count = expected, count + 1
        seen_head = seen_head or expected == head
    if not seen_head:
        return ChainCheck(count, previous, None, f"the hash kept from before, {head}, is no longer in the chain")
    return ChainCheck(count, previous)
