"""Customer value from the event ledger, on SQLite and PostgreSQL: which events count, how amounts are read and
summed, and the tier the spend gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from amends.detect.conditions import parse_path
from amends.errors import InvalidInput
from amends.events import Event
from amends.events.ledger import append_events
from amends.recover.policy import ValueSpec, shipped_policy
from amends.recover.value import customer_value
from amends.store import Database
from tests.conftest import NOW

AT = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)
SPEC = ValueSpec(
    window=YEAR,
    spend=(("order.placed", parse_path("data.total")), ("booking.confirmed", parse_path("data.fare.amount"))),
    tiers=((Decimal(0), "standard"), (Decimal(500), "silver"), (Decimal(2000), "gold")),
)


def an_event(number: int, event_type: str, before_at: timedelta, customer: str = "C-1", **data: Any) -> Event:
    return Event(
        id=f"e-{number}",
        source="https://shop.example.com",
        type=event_type,
        time=AT - before_at,
        subject=customer,
        data=data,
    )


def store(db: Database, *events: Event) -> None:
    with db.unit_of_work(writes=True) as uow:
        append_events(uow, list(events), received_at=NOW)
        uow.commit()


def value_of(db: Database, customer: str = "C-1", spec: ValueSpec = SPEC, at: datetime = AT) -> Any:
    with db.unit_of_work() as uow:
        return customer_value(uow, spec, customer, at)


def test_only_the_customers_spend_events_inside_the_window_count(db: Database) -> None:
    day = timedelta(days=1)
    store(
        db,
        an_event(1, "order.placed", day, total=100),
        an_event(2, "booking.confirmed", 10 * day, fare={"amount": 400.25, "currency": "EUR"}),
        an_event(3, "order.placed", timedelta(0), total=7),  # at `at` itself: in
        an_event(4, "order.placed", YEAR, total=1000),  # exactly a window before: out
        an_event(5, "order.placed", YEAR + day, total=50),  # older: out
        an_event(6, "order.placed", -day, total=999),  # after `at`: out
        an_event(7, "order.delivered", day, total=1000),  # not a spend type
        an_event(8, "booking.confirmed", day, fare=300),  # the path reads data.fare.amount
        an_event(9, "order.placed", day, customer="C-2", total=5000),  # another customer
    )

    value = value_of(db)

    assert value.spend == Decimal("507.25")
    assert value.tier == "silver"
    assert value.window_start == AT - YEAR
    assert value_of(db, "C-2").spend == Decimal("5000.00")
    assert value_of(db, "C-2").tier == "gold"


@pytest.mark.parametrize("amount", [None, "120", True, [120], {"value": 120}])
def test_a_missing_or_non_numeric_amount_counts_nothing(db: Database, amount: Any) -> None:
    missing = {} if amount is None else {"total": amount}
    store(
        db,
        an_event(1, "order.placed", timedelta(hours=1), total=20),
        an_event(2, "order.placed", timedelta(hours=2), **missing),
    )

    assert value_of(db).spend == Decimal("20.00")


@pytest.mark.parametrize(
    ("totals", "spend"),
    [
        ([1.005], "1.01"),  # as a binary float 1.005 is a little below it, and would round down
        ([2.125], "2.13"),  # half up, not to even
        ([0.1, 0.2, 0.3], "0.60"),
        ([19.99, 5], "24.99"),
    ],
)
def test_amounts_are_read_as_written_and_the_sum_rounded_half_up_to_the_cent(
    db: Database, totals: list[float], spend: str
) -> None:
    store(db, *(an_event(n, "order.placed", timedelta(hours=n + 1), total=t) for n, t in enumerate(totals)))

    value = value_of(db)

    assert value.spend == Decimal(spend)
    assert value.spend.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("total", "tier"), [(499.99, "standard"), (500, "silver"), (1999.99, "silver"), (2000, "gold")]
)
def test_the_spend_picks_the_tier_whose_threshold_it_reaches(db: Database, total: float, tier: str) -> None:
    store(db, an_event(1, "order.placed", timedelta(days=3), total=total))

    assert value_of(db).tier == tier


def test_a_customer_with_no_spend_is_in_the_first_tier(db: Database) -> None:
    value = value_of(db, "nobody")

    assert (value.spend, value.tier) == (Decimal("0.00"), "standard")


def test_the_window_follows_the_instant_asked_about(db: Database) -> None:
    store(db, an_event(1, "order.placed", timedelta(days=30), total=800))

    assert value_of(db).tier == "silver"
    assert value_of(db, at=AT + YEAR - timedelta(days=31)).tier == "silver"
    assert value_of(db, at=AT + YEAR - timedelta(days=30)).tier == "standard"  # the order is a window old now
    assert value_of(db, at=AT - timedelta(days=31)).tier == "standard"  # before the order


def test_the_shipped_policy_counts_orders_fares_and_invoices(db: Database) -> None:
    spec = shipped_policy().value
    store(
        db,
        an_event(1, "order.placed", timedelta(days=2), total=60.5),
        an_event(2, "booking.confirmed", timedelta(days=40), fare=1210.0, currency="EUR"),
        an_event(3, "booking.confirmed", timedelta(days=20), fare=0),  # a rebooking
        an_event(4, "service.completed", timedelta(days=100), invoice_total=742.8, currency="USD"),
        an_event(5, "order.returned", timedelta(days=1), total=60.5),
    )

    value = value_of(db, spec=spec)

    assert value.spend == Decimal("2013.30")
    assert value.tier == "gold"


def test_an_instant_without_a_time_zone_is_refused(db: Database) -> None:
    with pytest.raises(InvalidInput) as caught:
        value_of(db, at=AT.replace(tzinfo=None))

    assert caught.value.field == "at"
