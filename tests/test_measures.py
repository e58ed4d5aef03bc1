"""Recovery measures: per case and summarised, from rows written straight into the tables, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from amends.errors import InvalidInput, NotFound
from amends.recover.measures import case_measures, no_cases, summarise, summarise_by_week
from amends.store import Database, UnitOfWork, tables

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def a_case(uow: UnitOfWork, customer: str, **columns: Any) -> int:
    values: dict[str, Any] = {
        "customer_id": customer,
        "origin": "proactive",
        "status": "open",
        "playbook": "default",
        "severity": 2,
        "fault": "company",
        "owner_id": "ann",
        "opened_at": T0,
        "reopened": 0,
        **columns,
    }
    return int(uow.execute(sa.insert(tables.cases).values(**values).returning(tables.cases.c.id)).scalar_one())


def handoff(uow: UnitOfWork, case_id: int, from_id: str | None, to_id: str, at: datetime) -> None:
    uow.execute(
        sa.insert(tables.handoffs).values(case_id=case_id, from_id=from_id, to_id=to_id, reason="r", by_id=None, at=at)
    )


def contact(uow: UnitOfWork, case_id: int, direction: str, at: datetime) -> None:
    uow.execute(sa.insert(tables.case_contacts).values(case_id=case_id, direction=direction, channel="email", at=at))


def approval(uow: UnitOfWork, case_id: int, status: str = "approved") -> None:
    uow.execute(
        sa.insert(tables.approvals).values(
            case_id=case_id,
            slot="case",
            kind="credit",
            amount=Decimal(80),
            cash_value=Decimal(80),
            policy="discretion",
            status=status,
            requested_by="ann",
            requested_at=T0 + HOUR,
        )
    )


def entry(uow: UnitOfWork, case_id: int, key: str, cash: str, *, reverses: int | None = None) -> int:
    statement = (
        sa.insert(tables.ledger)
        .values(
            entry_key=key,
            case_id=case_id,
            slot="case",
            customer_id="c",
            kind="credit",
            amount=Decimal(cash),
            unit="EUR",
            cash_value=Decimal(cash),
            policy="p",
            granted_by="ann",
            reverses_id=reverses,
            at=T0 + HOUR,
        )
        .returning(tables.ledger.c.id)
    )
    return int(uow.execute(statement).scalar_one())


def build_world(db: Database) -> dict[str, int]:
    """Six cases, each showing one way a case is, or is not, resolved at first contact."""
    with db.unit_of_work() as uow:
        ids: dict[str, int] = {}
        # Contacted after 2 h, resolved after 1 d by its first owner, three contacts, a remedy partly reversed.
        ids["fcr"] = a_case(
            uow, "c1", status="resolved", first_contact_at=T0 + 2 * HOUR, resolved_at=T0 + DAY, customer_spoke_at=None
        )
        handoff(uow, ids["fcr"], None, "ann", T0)  # the first assignment: not a handoff
        contact(uow, ids["fcr"], "outbound", T0 + 2 * HOUR)
        contact(uow, ids["fcr"], "inbound", T0 + 3 * HOUR)
        contact(uow, ids["fcr"], "outbound", T0 + 4 * HOUR)
        entry(uow, ids["fcr"], "k1", "30.00")
        wrong = entry(uow, ids["fcr"], "k2", "12.50")
        entry(uow, ids["fcr"], "k3", "-12.50", reverses=wrong)
        # Passed on twice: resolved after 3 d, not at first contact.
        ids["handed"] = a_case(uow, "c2", status="resolved", first_contact_at=T0 + 4 * HOUR, resolved_at=T0 + 3 * DAY)
        handoff(uow, ids["handed"], None, "ann", T0)
        handoff(uow, ids["handed"], "ann", "bob", T0 + HOUR)
        handoff(uow, ids["handed"], "bob", "cat", T0 + 2 * HOUR)
        contact(uow, ids["handed"], "outbound", T0 + 4 * HOUR)
        # Needed a manager's approval (even a denied request is an escalation); closed after 2 d.
        ids["approved"] = a_case(
            uow, "c3", status="closed", first_contact_at=T0 + HOUR, resolved_at=T0 + 2 * DAY, closed_at=T0 + 5 * DAY
        )
        approval(uow, ids["approved"], status="denied")
        entry(uow, ids["approved"], "k4", "80.00")
        # Reopened once; its latest resolution came 5 d after it was opened.
        ids["reopened"] = a_case(
            uow, "c4", status="resolved", first_contact_at=T0 + 6 * HOUR, resolved_at=T0 + 5 * DAY, reopened=1
        )
        # Still open and nobody has spoken: nothing to time yet.
        ids["open"] = a_case(uow, "c5", opened_at=T0 + DAY)
        # The customer complained first; we answered 30 min later and resolved it within the day.
        ids["reactive"] = a_case(
            uow,
            "c6",
            origin="reactive",
            status="resolved",
            opened_at=T0 + 2 * DAY,
            customer_spoke_at=T0 + 2 * DAY,
            first_contact_at=T0 + 2 * DAY + HOUR / 2,
            resolved_at=T0 + 2 * DAY + 8 * HOUR,
        )
        contact(uow, ids["reactive"], "inbound", T0 + 2 * DAY)
        contact(uow, ids["reactive"], "outbound", T0 + 2 * DAY + HOUR / 2)
        uow.commit()
    return ids


def test_a_case_resolved_by_its_first_owner_is_a_first_contact_resolution(db: Database) -> None:
    ids = build_world(db)
    with db.unit_of_work() as uow:
        m = case_measures(uow, ids["fcr"])
    assert m.case_id == ids["fcr"]
    assert (m.origin, m.status) == ("proactive", "resolved")
    assert m.time_to_first_contact == 2 * HOUR
    assert m.time_to_resolution == DAY
    assert (m.contacts, m.outbound_contacts, m.inbound_contacts) == (3, 2, 1)
    assert m.handoffs == 0
    assert m.approvals == 0
    assert m.first_contact_resolution is True
    assert m.remedy_cost == Decimal("30.00")  # 30 + 12.50 - 12.50
    assert m.customer_spoke_first is False  # we reached them; they never raised it


def test_a_handoff_an_approval_or_a_reopening_spoils_first_contact_resolution(db: Database) -> None:
    ids = build_world(db)
    with db.unit_of_work() as uow:
        handed = case_measures(uow, ids["handed"])
        approved = case_measures(uow, ids["approved"])
        reopened = case_measures(uow, ids["reopened"])
    assert handed.handoffs == 2  # the first assignment is not counted
    assert handed.first_contact_resolution is False
    assert handed.time_to_resolution == 3 * DAY
    assert approved.approvals == 1
    assert approved.first_contact_resolution is False
    assert approved.status == "closed"
    assert approved.time_to_resolution == 2 * DAY  # resolution, not closing
    assert approved.remedy_cost == Decimal("80.00")
    assert reopened.handoffs == 0
    assert reopened.approvals == 0
    assert reopened.first_contact_resolution is False
    assert reopened.time_to_resolution == 5 * DAY


def test_an_open_case_has_no_resolution_measures_yet(db: Database) -> None:
    ids = build_world(db)
    with db.unit_of_work() as uow:
        m = case_measures(uow, ids["open"])
    assert m.status == "open"
    assert m.time_to_first_contact is None
    assert m.time_to_resolution is None
    assert m.first_contact_resolution is None
    assert m.customer_spoke_first is None
    assert (m.contacts, m.handoffs, m.approvals) == (0, 0, 0)
    assert m.remedy_cost == Decimal("0.00")


def test_a_reactive_case_records_that_the_customer_spoke_first(db: Database) -> None:
    ids = build_world(db)
    with db.unit_of_work() as uow:
        m = case_measures(uow, ids["reactive"])
    assert m.origin == "reactive"
    assert m.customer_spoke_first is True
    assert m.time_to_first_contact == HOUR / 2
    assert m.time_to_resolution == 8 * HOUR
    assert (m.contacts, m.outbound_contacts, m.inbound_contacts) == (2, 1, 1)
    assert m.first_contact_resolution is True


def test_a_customer_who_spoke_after_our_contact_did_not_speak_first(db: Database) -> None:
    with db.unit_of_work() as uow:
        later = a_case(uow, "c1", first_contact_at=T0 + HOUR, customer_spoke_at=T0 + 2 * HOUR)
        unanswered = a_case(uow, "c2", customer_spoke_at=T0 + HOUR)
        same_moment = a_case(uow, "c3", first_contact_at=T0 + HOUR, customer_spoke_at=T0 + HOUR)
        uow.commit()
    with db.unit_of_work() as uow:
        assert case_measures(uow, later).customer_spoke_first is False
        assert case_measures(uow, unanswered).customer_spoke_first is True
        assert case_measures(uow, same_moment).customer_spoke_first is True
        summary = summarise(uow)
    assert summary.customer_spoke_first == 2


def test_durations_are_exact_to_the_microsecond_across_seconds_and_days(db: Database) -> None:
    opened = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    contact = timedelta(hours=2, microseconds=1)  # crosses a second, a day and a year
    resolution = timedelta(days=1, seconds=3, microseconds=999_998)
    with db.unit_of_work() as uow:
        case_id = a_case(
            uow,
            "c1",
            status="resolved",
            opened_at=opened,
            first_contact_at=opened + contact,
            resolved_at=opened + resolution,
        )
        uow.commit()
    with db.unit_of_work() as uow:
        one = case_measures(uow, case_id)
        summary = summarise(uow)
    assert one.time_to_first_contact == contact
    assert summary.median_time_to_first_contact == contact
    assert one.time_to_resolution == resolution
    assert summary.median_time_to_resolution == resolution


def test_an_unknown_case_is_not_found(db: Database) -> None:
    with db.unit_of_work() as uow, pytest.raises(NotFound, match="no case 404"):
        case_measures(uow, 404)


def test_the_summary_aggregates_every_case(db: Database) -> None:
    build_world(db)
    with db.unit_of_work() as uow:
        s = summarise(uow)
    assert (s.cases, s.proactive, s.reactive, s.resolved) == (6, 5, 1, 5)
    assert s.customer_spoke_first == 1
    assert s.first_contact_resolutions == 2
    assert s.first_contact_resolution_rate == pytest.approx(2 / 5)
    # First contacts after 2 h, 4 h, 1 h, 6 h and 30 min: the middle one is 2 h.
    assert s.median_time_to_first_contact == 2 * HOUR
    # Resolutions after 1 d, 3 d, 2 d, 5 d and 8 h: the middle one is 2 d.
    assert s.median_time_to_resolution == 2 * DAY
    assert s.mean_contacts == pytest.approx((3 + 1 + 0 + 0 + 0 + 2) / 6)
    assert s.mean_handoffs == pytest.approx(2 / 6)
    assert s.remedy_cost_total == Decimal("110.00")
    assert s.remedy_cost_per_case == Decimal("18.33")  # 110 / 6, to the cent


def test_the_summary_breaks_down_by_origin(db: Database) -> None:
    build_world(db)
    with db.unit_of_work() as uow:
        s = summarise(uow)
    assert set(s.by_origin) == {"proactive", "reactive"}
    proactive, reactive = s.by_origin["proactive"], s.by_origin["reactive"]
    assert (proactive.cases, proactive.proactive, proactive.reactive, proactive.resolved) == (5, 5, 0, 4)
    assert proactive.first_contact_resolution_rate == pytest.approx(1 / 4)
    # Four resolutions (1 d, 2 d, 3 d, 5 d): the median is the mean of the middle two.
    assert proactive.median_time_to_resolution == DAY * 5 / 2
    assert proactive.remedy_cost_total == Decimal("110.00")
    assert proactive.remedy_cost_per_case == Decimal("22.00")
    assert (reactive.cases, reactive.reactive, reactive.customer_spoke_first) == (1, 1, 1)
    assert reactive.median_time_to_first_contact == HOUR / 2  # one case: its own value
    assert reactive.mean_contacts == pytest.approx(2.0)
    assert reactive.remedy_cost_per_case == Decimal("0.00")
    assert proactive.by_origin == {}
    assert reactive.by_origin == {}


def test_the_summary_takes_cases_opened_in_the_window_and_of_the_origin(db: Database) -> None:
    build_world(db)
    with db.unit_of_work() as uow:
        first_day = summarise(uow, since=T0, until=T0 + DAY)  # the open case opened at T0 + 1 d: excluded
        later = summarise(uow, since=T0 + DAY)
        reactive = summarise(uow, origin="reactive")
    assert (first_day.cases, first_day.resolved, first_day.first_contact_resolutions) == (4, 4, 1)
    assert first_day.median_time_to_resolution == DAY * 5 / 2
    assert (later.cases, later.proactive, later.reactive) == (2, 1, 1)
    assert later.median_time_to_resolution == 8 * HOUR
    assert (reactive.cases, reactive.proactive) == (1, 0)
    assert set(reactive.by_origin) == {"reactive"}
    assert reactive.remedy_cost_total == Decimal("0.00")


def test_the_summary_of_no_cases_has_nothing_to_average(db: Database) -> None:
    build_world(db)
    with db.unit_of_work() as uow:
        s = summarise(uow, since=T0 + 30 * DAY)
    assert (s.cases, s.resolved, s.proactive, s.reactive) == (0, 0, 0, 0)
    assert s.median_time_to_first_contact is None
    assert s.median_time_to_resolution is None
    assert s.mean_contacts is None
    assert s.mean_handoffs is None
    assert s.first_contact_resolution_rate is None
    assert s.remedy_cost_total == Decimal("0.00")
    assert s.remedy_cost_per_case is None
    assert s.by_origin["proactive"].cases == 0


def test_the_summary_refuses_an_empty_window_and_an_unknown_origin(db: Database) -> None:
    with db.unit_of_work() as uow:
        with pytest.raises(InvalidInput) as window:
            summarise(uow, since=T0, until=T0)
        with pytest.raises(InvalidInput) as origin:
            summarise(uow, origin="psychic")
    assert window.value.field == "since"
    assert origin.value.field == "origin"


def test_the_summary_by_week_is_the_summary_of_each_week(db: Database) -> None:
    build_world(db)
    with db.unit_of_work() as uow:
        # Two more cases a week and two weeks later, so the span has weeks with and without cases.
        a_case(uow, "c7", opened_at=T0 + 8 * DAY, status="resolved", first_contact_at=T0 + 8 * DAY + HOUR,
               resolved_at=T0 + 9 * DAY)  # fmt: skip
        a_case(uow, "c8", opened_at=T0 + 15 * DAY)
        uow.commit()
    since, until = T0 - 7 * DAY, T0 + 21 * DAY
    with db.unit_of_work() as uow:
        weekly, overall = summarise_by_week(uow, since=since, until=until)
        assert weekly  # the weeks that have cases
        for week, summary in weekly.items():
            monday = datetime.fromisoformat(week).replace(tzinfo=UTC)
            assert monday.weekday() == 0
            alone = summarise(uow, since=max(monday, since), until=min(monday + 7 * DAY, until))
            assert summary == alone, week
        assert overall == summarise(uow, since=since, until=until)


def test_no_cases_is_what_an_empty_window_summarises_to(db: Database) -> None:
    with db.unit_of_work() as uow:
        assert no_cases() == summarise(uow, since=T0, until=T0 + DAY)
