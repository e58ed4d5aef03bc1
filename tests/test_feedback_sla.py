"""The response SLA in business time: working days and hours in the business's zone, holidays skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from amends.errors import InvalidInput
from amends.feedback.sla import BusinessHours, ResponseSla

BERLIN = ZoneInfo("Europe/Berlin")


def hours(text: str = "Mon-Fri 09:00-17:00", holidays: tuple[str, ...] = ()) -> BusinessHours:
    return BusinessHours.parse(text, "Europe/Berlin", holidays)


def test_one_business_day_is_the_same_time_on_the_next_working_day() -> None:
    sla = ResponseSla.parse("1d", hours())
    tuesday = datetime(2026, 11, 24, 11, 30, tzinfo=BERLIN)
    assert sla.due(tuesday) == datetime(2026, 11, 25, 11, 30, tzinfo=BERLIN)
    friday = datetime(2026, 11, 27, 16, 0, tzinfo=BERLIN)
    assert sla.due(friday) == datetime(2026, 11, 30, 16, 0, tzinfo=BERLIN)  # over the weekend


def test_feedback_outside_the_hours_starts_its_clock_when_they_open() -> None:
    sla = ResponseSla.parse("4h", hours())
    saturday_night = datetime(2026, 11, 28, 23, 0, tzinfo=BERLIN)
    assert sla.due(saturday_night) == datetime(2026, 11, 30, 13, 0, tzinfo=BERLIN)
    early = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
    assert sla.due(early).astimezone(BERLIN) == datetime(2026, 11, 24, 13, 0, tzinfo=BERLIN)
    assert sla.due(early).tzinfo == UTC  # answered in the zone it was asked in


def test_holidays_and_daylight_saving_are_counted_right() -> None:
    sla = ResponseSla.parse("1d", hours(holidays=("2026-12-25", "2026-12-28")))
    christmas_eve = datetime(2026, 12, 24, 10, 0, tzinfo=BERLIN)
    assert sla.due(christmas_eve) == datetime(2026, 12, 29, 10, 0, tzinfo=BERLIN)
    # The clocks go back on Sunday 25 October 2026: Friday 15:00 + 1 business day is Monday 15:00 local.
    before = datetime(2026, 10, 23, 15, 0, tzinfo=BERLIN)
    assert sla.due(before).astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 10, 26, 15, 0)
    assert ResponseSla.parse("2d", hours()).work == timedelta(hours=16)


@pytest.mark.parametrize(
    ("text", "zone", "holidays", "field"),
    [
        ("Mon-Fri", "Europe/Berlin", (), "business_hours"),
        ("Mon-Xyz 09:00-17:00", "Europe/Berlin", (), "business_hours"),
        ("Mon-Fri 17:00-09:00", "Europe/Berlin", (), "business_hours"),
        ("Mon-Fri 25:00-24:00", "Europe/Berlin", (), "business_hours"),
        ("Mon-Fri 09:00-24:30", "Europe/Berlin", (), "business_hours"),
        ("Mon-Fri 09:00-17:00", "Mars/Olympus", (), "business_timezone"),
        ("Mon-Fri 09:00-17:00", "Europe/Berlin", ("25.12.2026",), "business_holidays"),
    ],
)
def test_bad_business_hours_are_refused_naming_the_setting(
    text: str, zone: str, holidays: tuple[str, ...], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        BusinessHours.parse(text, zone, holidays)
    assert refused.value.field == field


def test_a_weekend_shift_and_a_bad_sla() -> None:
    weekend = BusinessHours.parse("Sat-Sun 10:00-14:00", "Europe/Berlin")
    assert weekend.days == frozenset({5, 6})
    friday = datetime(2026, 11, 27, 12, 0, tzinfo=BERLIN)
    assert ResponseSla.parse("2h", weekend).due(friday) == datetime(2026, 11, 28, 12, 0, tzinfo=BERLIN)
    with pytest.raises(InvalidInput) as refused:
        ResponseSla.parse("soon", weekend)
    assert refused.value.field == "response_sla"


def test_round_the_clock_runs_to_midnight_and_a_day_is_24_hours() -> None:
    always = BusinessHours.parse("Mon-Sun 00:00-24:00", "Europe/Berlin")
    assert always.day_length == timedelta(hours=24)
    sla = ResponseSla.parse("4h", always)
    late = datetime(2026, 11, 28, 22, 30, tzinfo=BERLIN)  # a Saturday night: past midnight into Sunday
    assert sla.due(late) == datetime(2026, 11, 29, 2, 30, tzinfo=BERLIN)
    assert ResponseSla.parse("1d", always).due(late) == late + timedelta(days=1)
    evenings = BusinessHours.parse("Fri 18:00-24:00", "Europe/Berlin")
    friday = datetime(2026, 11, 27, 23, 0, tzinfo=BERLIN)
    assert ResponseSla.parse("2h", evenings).due(friday) == datetime(2026, 12, 4, 19, 0, tzinfo=BERLIN)
