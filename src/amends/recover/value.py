"""Customer value: what a customer spent with the company over the policy's window, read from the event
ledger, and the tier that puts them in. Reads events only; never writes."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa

from amends.detect.conditions import FieldPath
from amends.errors import InvalidInput
from amends.events import Event
from amends.recover.policy import CENT, CustomerValue, ValueSpec
from amends.store import UnitOfWork, tables

__all__ = ["customer_value"]

_events = tables.events


def customer_value(uow: UnitOfWork, spec: ValueSpec, customer_id: str, at: datetime) -> CustomerValue:
    """The customer's spend over the window that ends at `at`: the amounts of their events of the spend types
    with a time after `at - window` and up to `at`, summed and rounded half up to the cent, and its tier.

    An event whose amount is missing or not a number counts 0. A customer with no such events spends 0.
    """
    if at.tzinfo is None:
        raise InvalidInput("at", f"expected an aware datetime, got {at.isoformat()} with no time zone")
    start = at - spec.window
    paths: dict[str, list[FieldPath]] = {}
    for event_type, path in spec.spend:
        paths.setdefault(event_type, []).append(path)
    query = sa.select(
        _events.c.event_id, _events.c.source, _events.c.type, _events.c.time, _events.c.subject, _events.c.data
    ).where(  # served by the index on (subject, time, seq)
        _events.c.subject == customer_id,
        _events.c.time > start,
        _events.c.time <= at,
        _events.c.type.in_(sorted(paths)),
    )
    total = Decimal(0)
    for row in uow.execute(query):
        event = Event(
            id=row.event_id, source=row.source, type=row.type, time=row.time, subject=row.subject, data=row.data
        )
        for path in paths[event.type]:
            total += _amount(path.read(event))
    spend = total.quantize(CENT, rounding=ROUND_HALF_UP)
    return CustomerValue(spend=spend, tier=spec.tier_of(spend), window_start=start)


def _amount(value: Any) -> Decimal:
    # JSON numbers only: text, booleans and anything else count 0, as in the rule language (a bool is no number).
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Decimal(0)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else Decimal(0)
    return Decimal(value)
