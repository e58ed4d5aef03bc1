"""A customer's personal data on request: everything amends holds about one customer, as one JSON document
(the right of access), and its erasure (the right to be forgotten), keeping the anonymised ledger and metrics.

Erasure gives the customer's rows, and the incident keys made from their id, a random pseudonym (`forgotten:` and
16 hex digits, drawn, not derived: nothing leads back from it to the id), replaces everything they or staff wrote
about them and every address with a note that it was erased, drops the events' data and the incidents' facts,
cancels what was still to be sent, and closes what was still open. What stays: the counts, times, rules,
severities, remedies and amounts, under the pseudonym, so the ledger still adds up and the measures still count the
case. The audit log is kept whole (it is a tamper-evident chain): it holds row ids and no free text, and the
customer's id only as the target of an opt-out or opt-in, their consent decision (docs/security.md#privacy).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from amends.detect import renew_detectors
from amends.errors import InvalidInput, NotFound
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.recover.lock import recovery_lock
from amends.store import UnitOfWork, tables

__all__ = ["ERASED", "FORGOTTEN_PREFIX", "Forgotten", "export_customer", "forget_customer"]

ERASED = "(erased at the customer's request)"
FORGOTTEN_PREFIX = "forgotten:"
t = tables

# Where a customer's rows are: tables with the customer's id in a column, and tables reached through their
# cases or their feedback. In the order of the export document.
_BY_CUSTOMER: Mapping[str, sa.Column[Any]] = {
    "events": t.events.c.subject,
    "incidents": t.incidents.c.customer_id,
    "cases": t.cases.c.customer_id,
    "complaints": t.complaints.c.customer_id,
    "remedies": t.ledger.c.customer_id,
    "messages": t.messages.c.customer_id,
    "card_tasks": t.card_tasks.c.customer_id,
    "replies": t.inbound_replies.c.customer_id,
    "feedback_requests": t.feedback_requests.c.customer_id,
    "feedback": t.feedback.c.customer_id,
    "suggestions_asked": t.suggestion_askers.c.customer_id,
    "opt_outs": t.opt_outs.c.customer_id,
    "risk_scores": t.risk_scores.c.customer_id,
    "holdout_draws": t.holdout_draws.c.customer_id,
}
_BY_CASE: Mapping[str, sa.Table] = {
    "case_steps": t.case_steps,
    "case_incidents": t.case_incidents,
    "case_contacts": t.case_contacts,
    "handoffs": t.handoffs,
    "approvals": t.approvals,
}
_BY_FEEDBACK: Mapping[str, sa.Table] = {"feedback_responses": t.feedback_responses}

# What is erased: free text by the customer or about them, addresses, and copies of event data. A text column
# becomes NULL where it may, the note ERASED where it must hold text; a JSON column becomes the value given.
_ERASE: Mapping[sa.Table, Sequence[str]] = {
    t.cases: ("resolution",),
    t.complaints: ("text",),
    t.ledger: ("note",),
    t.messages: ("recipient", "subject", "text", "html", "last_error"),
    t.inbound_replies: ("from_address", "subject", "text", "full_text", "html"),
    t.feedback: ("author", "liked", "disliked", "text"),
    t.feedback_responses: ("text",),
    t.case_steps: ("draft",),
    t.case_contacts: ("note",),
    t.handoffs: ("reason",),
    t.approvals: ("note", "reason"),
}
_ERASE_JSON: Mapping[sa.Table, Mapping[str, Any]] = {
    t.events: {"data": {}, "attributes": None},
    t.incidents: {"facts": {}},
    t.messages: {"headers": {}},
    t.inbound_replies: {"headers": [], "attachments": None},
    t.feedback: {"reasons": {}},
}


# What staff wrote in a completed step's outcome (recover/cases.py complete_step, remedies.py no_remedy): its note,
# the apology as sent, the reason for no remedy. The rest (the owner, the remedy, the answer's label) stays.
_STEP_TEXTS = ("note", "text", "reason")


def _erasure(table: sa.Table) -> dict[str, Any]:
    values = {name: None if table.c[name].nullable else ERASED for name in _ERASE.get(table, ())}
    return values | dict(_ERASE_JSON.get(table, {}))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rows(uow: UnitOfWork, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [{str(key): _plain(value) for key, value in row._asdict().items()} for row in uow.execute(query)]


def _check_id(customer_id: str) -> None:
    if not customer_id.strip() or len(customer_id) > 200:
        raise InvalidInput("customer", "a customer id is 1 to 200 characters")


def _case_ids(uow: UnitOfWork, customer_id: str) -> list[int]:
    return list(uow.execute(sa.select(t.cases.c.id).where(t.cases.c.customer_id == customer_id)).scalars())


def _feedback_ids(uow: UnitOfWork, customer_id: str) -> list[int]:
    return list(uow.execute(sa.select(t.feedback.c.id).where(t.feedback.c.customer_id == customer_id)).scalars())


def export_customer(uow: UnitOfWork, customer_id: str, *, now: datetime) -> dict[str, Any]:
    """Everything held about one customer, table by table, as JSON-ready values. NotFound for an unknown id."""
    _check_id(customer_id)
    customer = uow.execute(sa.select(t.customers).where(t.customers.c.id == customer_id)).first()
    if customer is None:
        raise NotFound(f"customer {customer_id!r} is not known")
    document: dict[str, Any] = {
        "customer": customer_id,
        "first_seen_at": _plain(customer.created_at),
        "exported_at": _plain(now),
    }
    for name, column in _BY_CUSTOMER.items():
        document[name] = _rows(uow, sa.select(column.table).where(column == customer_id))
    cases = _case_ids(uow, customer_id)
    for name, table in _BY_CASE.items():
        document[name] = _rows(uow, sa.select(table).where(table.c.case_id.in_(cases))) if cases else []
    answers = _feedback_ids(uow, customer_id)
    for name, table in _BY_FEEDBACK.items():
        document[name] = _rows(uow, sa.select(table).where(table.c.feedback_id.in_(answers))) if answers else []
    return document


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What erasure did: the pseudonym the customer's rows now carry, and how many rows of each kind it changed."""

    pseudonym: str
    rows: Mapping[str, int]
    cancelled_messages: int
    closed_cases: int


def forget_customer(uow: UnitOfWork, customer_id: str, actor: Actor, *, now: datetime, via: str) -> Forgotten:
    """Erase one customer's personal data, in the caller's transaction (NotFound for an unknown id). `via` says
    how it was asked for (cli, api), for the audit log."""
    _check_id(customer_id)
    if customer_id.startswith(FORGOTTEN_PREFIX):
        raise InvalidInput("customer", "this customer was forgotten already")
    recovery_lock(uow)  # no case opens and no grant is made for them while their rows change
    # No detector evaluates meanwhile, and every one, in every process, then rebuilds from the erased state: what
    # a running one still held of the customer in memory would otherwise open incidents under their id.
    renew_detectors(uow)
    customer = uow.execute(sa.select(t.customers).where(t.customers.c.id == customer_id)).first()
    if customer is None:
        raise NotFound(f"customer {customer_id!r} is not known")
    pseudonym = FORGOTTEN_PREFIX + secrets.token_hex(8)
    cases, answers = _case_ids(uow, customer_id), _feedback_ids(uow, customer_id)
    cancelled = uow.execute(
        sa.update(t.messages)
        .where(t.messages.c.customer_id == customer_id, t.messages.c.status == "pending")
        .values(status="cancelled", note="the customer asked to be forgotten")
    ).rowcount
    closed = uow.execute(
        sa.update(t.cases)
        .where(t.cases.c.customer_id == customer_id, t.cases.c.status != "closed")
        .values(status="closed", closed_at=now)
    ).rowcount
    uow.execute(
        sa.update(t.feedback_requests)
        .where(t.feedback_requests.c.customer_id == customer_id, t.feedback_requests.c.expires_at > now)
        .values(expires_at=now)
    )
    counts: dict[str, int] = {}
    for name, column in _BY_CUSTOMER.items():
        table = column.table
        assert isinstance(table, sa.Table)
        values = {column.name: pseudonym, **_erasure(table)}
        counts[name] = uow.execute(sa.update(table).where(column == customer_id).values(**values)).rowcount
    for rows, key, ids in (
        (_BY_CASE, "case_id", cases),
        (_BY_FEEDBACK, "feedback_id", answers),
    ):
        for name, table in rows.items():
            erase = _erasure(table)
            if erase and ids:
                counts[name] = uow.execute(sa.update(table).where(table.c[key].in_(ids)).values(**erase)).rowcount
    if cases:  # after the erasure of the reasons, so that this one, which names nobody, stays
        uow.execute(
            sa.update(t.approvals)
            .where(t.approvals.c.case_id.in_(cases), t.approvals.c.status == "pending")
            .values(status="denied", decided_by="system", decided_at=now, reason="the customer asked to be forgotten")
        )
    counts["step_outcomes"] = _erase_outcomes(uow, cases)
    counts["incident_keys"] = _rename_keys(uow, customer_id, pseudonym)
    counts["detection_state"] = _forget_waiting(uow, customer_id)
    uow.execute(sa.delete(t.customers).where(t.customers.c.id == customer_id))
    uow.execute(sa.insert(t.customers).values(id=pseudonym, created_at=customer.created_at))
    audit(uow, actor, "customer.forgotten", f"customer:{pseudonym}", at=now,
          rows=sum(counts.values()), cancelled=cancelled, closed=closed, via=via)  # fmt: skip
    return Forgotten(pseudonym, counts, cancelled, closed)


def _erase_outcomes(uow: UnitOfWork, cases: Sequence[int]) -> int:
    """Erase the texts in the outcomes of the cases' completed steps (JSON documents: read, changed, written)."""
    if not cases:
        return 0
    steps, erased = t.case_steps, 0
    rows = uow.execute(
        sa.select(steps.c.case_id, steps.c.kind, steps.c.outcome).where(
            steps.c.case_id.in_(cases), steps.c.completed_at.is_not(None)
        )
    ).all()
    for row in rows:
        outcome = dict(row.outcome or {})
        if not any(outcome.get(name) is not None for name in _STEP_TEXTS):
            continue
        outcome |= {name: ERASED for name in _STEP_TEXTS if outcome.get(name) is not None}
        where = (steps.c.case_id == row.case_id, steps.c.kind == row.kind)
        erased += uow.execute(sa.update(steps).where(*where).values(outcome=outcome)).rowcount
    return erased


def _rename_keys(uow: UnitOfWork, customer_id: str, pseudonym: str) -> int:
    """Give the pseudonym to the incidents whose correlation key is the customer's id: keyed by the subject, an
    absence rule's key is the id itself, a count or sequence rule's `<id>@<instant>` (detect/streaming.py). The
    prefix is compared as text, not with LIKE, which would read `%` and `_` in an id as wildcards."""
    keys, prefix = t.incidents.c.key, customer_id + "@"
    whole = uow.execute(sa.update(t.incidents).where(keys == customer_id).values(key=pseudonym)).rowcount
    episodes = uow.execute(
        sa.update(t.incidents)
        .where(sa.func.substr(keys, 1, len(prefix)) == prefix)
        .values(key=sa.literal(pseudonym + "@", sa.Text) + sa.func.substr(keys, len(prefix) + 1, type_=sa.Text))
    ).rowcount
    return int(whole + episodes)


def _forget_waiting(uow: UnitOfWork, customer_id: str) -> int:
    """Drop detection's waiting state for the customer: entries keyed by their id, and those holding a copy of one
    of their events (what it waited for is forgotten). Text search finds the candidates; each is then read."""
    state = t.detect_state
    quoted = orjson.dumps(customer_id).decode()
    candidates = uow.execute(
        sa.select(state).where(sa.or_(state.c.key == customer_id, sa.cast(state.c.payload, sa.Text).contains(quoted)))
    ).all()
    gone = 0
    for row in candidates:
        held = [row.payload.get(name) for name in ("start", "first")]
        if row.key == customer_id or any(isinstance(e, dict) and e.get("subject") == customer_id for e in held):
            gone += uow.execute(
                sa.delete(state).where(
                    state.c.detector == row.detector,
                    state.c.kind == row.kind,
                    state.c.rule_id == row.rule_id,
                    state.c.key == row.key,
                )
            ).rowcount
    return gone
