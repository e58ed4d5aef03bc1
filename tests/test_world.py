"""The sample world: seeded, valid, in time order unless asked otherwise, and causally honest."""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from amends.events import Event, validate_event
from amends.outreach.profiles import profile_from_data
from amends.world import (
    BUSINESSES,
    Business,
    CustomerTruth,
    WorldError,
    generate_world,
    parse_business,
    truth_path_for,
    write_world,
)

# Exactly the vocabulary the detection rules are written against: type -> (required keys, optional keys).
VOCABULARY: dict[Business, dict[str, tuple[set[str], set[str]]]] = {
    "shop": {
        "order.placed": ({"order_id", "total", "currency", "items", "promised_by"}, set()),
        "order.shipped": ({"order_id", "carrier"}, set()),
        "order.delivered": ({"order_id", "carrier", "damaged"}, set()),
        "order.returned": ({"order_id", "reason"}, set()),
        "support.contact": ({"ticket_id", "channel", "topic"}, {"order_id"}),
        "feedback.rated": ({"rating", "order_id"}, set()),
        "complaint.filed": ({"topic", "order_id"}, set()),
    },
    "airline": {
        "booking.confirmed": (
            {
                "booking_ref",
                "flight_no",
                "origin",
                "destination",
                "scheduled_departure",
                "scheduled_arrival",
                "fare",
                "currency",
                "cabin",
            },
            set(),
        ),
        "flight.departed": ({"booking_ref", "flight_no", "delay_minutes"}, set()),
        "flight.arrived": ({"booking_ref", "flight_no", "delay_minutes", "scheduled_arrival"}, set()),
        "flight.cancelled": ({"booking_ref", "flight_no", "reason"}, set()),
        "connection.missed": ({"booking_ref", "flight_no", "next_flight_no"}, set()),
        "bag.checked": ({"bag_tag", "booking_ref", "flight_no", "expected_by"}, set()),
        "bag.delivered": ({"bag_tag", "booking_ref"}, set()),
        "support.contact": ({"ticket_id", "channel", "topic"}, {"booking_ref"}),
        "feedback.rated": ({"rating", "booking_ref"}, set()),
        "complaint.filed": ({"topic", "booking_ref"}, set()),
    },
    "car_service": {
        "service.opened": ({"job_id", "vehicle_id", "kind", "promised_by"}, set()),
        "service.started": ({"job_id", "vehicle_id", "wait_minutes"}, set()),
        "service.completed": ({"job_id", "vehicle_id", "invoice_total", "currency"}, {"wait_minutes_total"}),
        "support.contact": ({"ticket_id", "channel", "topic"}, {"job_id"}),
        "feedback.rated": ({"rating", "job_id"}, set()),
        "complaint.filed": ({"topic", "job_id"}, set()),
    },
}
# Every business's customers: their profile at the start, and a change of one detail for a few.
PROFILE_VOCABULARY: dict[str, tuple[set[str], set[str]]] = {
    "customer.profile": ({"name", "phone", "language", "timezone"}, {"email", "address", "channel"}),
    "customer.updated": (set(), {"email", "phone", "address"}),
}
SOURCES = {
    "shop": "https://shop.example.com/",
    "airline": "https://airline.example.com/",
    "car_service": "https://garage.example.com/",
}
PREFIXES = {"shop": "C-", "airline": "P-", "car_service": "D-"}
# Big enough for rare events (missed connections, complaints) and for rates to mean something.
SAMPLE_SIZES = {"shop": (4000, 150), "airline": (1000, 150), "car_service": (3000, 150)}


@cache
def sample(business: Business) -> tuple[list[dict[str, Any]], list[CustomerTruth]]:
    """One seeded world per business, in time order, with its ground truth, shared by the tests below."""
    customers, days = SAMPLE_SIZES[business]
    stream = generate_world(business, customers=customers, days=days, seed=2025)
    events = list(stream)
    return events, list(stream.truth())


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def out_of_order(events: Iterable[dict[str, Any]]) -> list[timedelta]:
    """For each event that arrived after a younger one: by how much."""
    latest: datetime | None = None
    lags = []
    for event in events:
        time = at(event["time"])
        if latest is not None and time < latest:
            lags.append(latest - time)
        latest = time if latest is None else max(latest, time)
    return lags


def digest(business: Business, seed: int, **options: Any) -> str:
    stream = generate_world(business, customers=200, days=60, seed=seed, **options)
    return hashlib.sha256(b"".join(orjson.dumps(e) for e in stream)).hexdigest()


# Determinism -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("business", BUSINESSES)
def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(business: Business, tmp_path: Path) -> None:
    first = write_world(tmp_path / "a.jsonl", business, customers=200, days=60, seed=7, late_share=0.05)
    second = write_world(tmp_path / "b.jsonl", business, customers=200, days=60, seed=7, late_share=0.05)
    other = write_world(tmp_path / "c.jsonl", business, customers=200, days=60, seed=8, late_share=0.05)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.truth_path.read_bytes() == second.truth_path.read_bytes()
    assert first.path.read_bytes() != other.path.read_bytes()
    assert first.events > 200


def test_the_same_seed_gives_the_same_world_in_another_process_with_other_string_hashes() -> None:
    script = (
        "import hashlib, orjson; from amends.world import generate_world; "
        "s = generate_world('airline', customers=200, days=60, seed=3, late_share=0.02, duplicate_share=0.01); "
        "print(hashlib.sha256(b''.join(orjson.dumps(e) for e in s)).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert run.stdout.strip() == digest("airline", 3, late_share=0.02, duplicate_share=0.01)


def test_negative_seeds_are_worlds_of_their_own() -> None:
    # random.Random(-1) and Random(1) are the same generator; the world must not inherit that.
    assert digest("shop", -1) != digest("shop", 1)


def test_late_arrival_and_resends_reorder_the_same_events_without_changing_them() -> None:
    plain = list(generate_world("shop", customers=300, days=60, seed=5))
    messy = list(generate_world("shop", customers=300, days=60, seed=5, late_share=0.1, duplicate_share=0.05))
    assert messy != plain
    assert {orjson.dumps(e) for e in messy} == {orjson.dumps(e) for e in plain}


# Arrival order -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("business", BUSINESSES)
def test_events_come_in_time_order_when_none_is_asked_to_be_late(business: Business) -> None:
    events, _ = sample(business)
    assert out_of_order(events) == []


@pytest.mark.parametrize("business", ["shop", "airline"])
def test_a_late_share_arrives_out_of_order_but_never_later_than_max_lateness(business: Business) -> None:
    stream = generate_world(
        business, customers=500, days=60, seed=9, late_share=0.05, max_lateness=timedelta(minutes=90)
    )
    events = list(stream)
    lags = out_of_order(events)
    assert 0 < len(lags) <= 0.05 * len(events)
    assert max(lags) <= timedelta(minutes=90)
    assert 0.035 * len(events) < stream.late < 0.065 * len(events)
    assert stream.duplicates == 0


def test_no_event_is_sent_twice_unless_asked() -> None:
    events = list(generate_world("airline", customers=300, days=60, seed=4, late_share=0.1))
    keys = [(e["source"], e["id"]) for e in events]
    assert len(set(keys)) == len(keys)


def test_a_duplicate_share_resends_exact_copies_within_max_lateness() -> None:
    stream = generate_world(
        "car_service", customers=2000, days=90, seed=4, duplicate_share=0.03, max_lateness=timedelta(hours=1)
    )
    events = list(stream)
    first: dict[tuple[str, str], bytes] = {}
    resends = 0
    for event in events:
        key = (event["source"], event["id"])
        if key in first:
            resends += 1
            assert orjson.dumps(event) == first[key]
        else:
            first[key] = orjson.dumps(event)
    assert resends == stream.duplicates
    assert 0.02 * len(first) < resends < 0.04 * len(first)
    assert max(out_of_order(events)) <= timedelta(hours=1)


# Validity and vocabulary -------------------------------------------------------------------------------


@pytest.mark.parametrize("business", BUSINESSES)
def test_every_envelope_is_a_valid_cloudevent_about_a_customer(business: Business) -> None:
    events, truth = sample(business)
    customers = {t.customer for t in truth}
    for envelope in events:
        event = validate_event(envelope)
        assert isinstance(event, Event), event
        assert envelope["specversion"] == "1.0"
        assert envelope["source"].startswith(SOURCES[business])
        assert envelope["subject"] in customers
        assert uuid.UUID(envelope["id"]).version == 4
    assert len({e["id"] for e in events}) == len(events)
    assert all(t.customer.startswith(PREFIXES[business]) and len(t.customer) == 8 for t in truth)


@pytest.mark.parametrize("business", BUSINESSES)
def test_each_business_speaks_exactly_its_vocabulary(business: Business) -> None:
    events, _ = sample(business)
    vocabulary = VOCABULARY[business] | PROFILE_VOCABULARY
    assert {e["type"] for e in events} == set(vocabulary)
    for event in events:
        required, optional = vocabulary[event["type"]]
        keys = set(event["data"])
        assert required <= keys <= required | optional, (event["type"], keys)
        for name, value in event["data"].items():
            if name in {"promised_by", "expected_by", "scheduled_departure", "scheduled_arrival"}:
                assert at(value).utcoffset() is not None
            if name in {"total", "fare", "invoice_total"}:
                assert isinstance(value, float)
                assert value >= 0
                assert event["data"]["currency"] in {"EUR", "USD"}
        if event["type"] == "support.contact":
            assert event["data"]["channel"] in {"email", "phone", "chat", "web"}
        if event["type"] == "feedback.rated":
            assert event["data"]["rating"] in {1, 2, 3, 4, 5}
        if event["type"] == "customer.updated":
            assert len(event["data"]) == 1


@pytest.mark.parametrize("business", BUSINESSES)
def test_every_customer_has_a_profile_outreach_can_use_at_the_start(business: Business) -> None:
    events, truth = sample(business)
    start = at(events[0]["time"])
    profiles = {e["subject"]: e for e in events if e["type"] == "customer.profile"}
    assert set(profiles) == {t.customer for t in truth}
    zones = {t.customer: t.timezone for t in truth}
    for customer, event in profiles.items():
        assert at(event["time"]) == start
        profile = profile_from_data(customer, [event["data"]])
        assert profile.problems == (), (customer, profile.problems)  # every value is one outreach can use
        assert profile.timezone == zones[customer]
        assert profile.email is None or profile.email.rsplit("@", 1)[1] in {"example.com", "example.net", "example.org"}
    # Most can be emailed; some only get a card; a few have no address at all (a task for staff).
    shares = Counter(("email" in e["data"], "address" in e["data"]) for e in profiles.values())
    assert shares[(True, True)] > 0.8 * len(profiles)
    assert shares[(False, True)] > 0
    assert shares[(False, False)] > 0
    # Changes come later, one detail each, and fold over the profile.
    updates = [e for e in events if e["type"] == "customer.updated"]
    assert updates
    assert all(at(e["time"]) > start for e in updates)


@pytest.mark.parametrize("business", BUSINESSES)
def test_times_carry_the_utc_offset_of_the_customers_home_zone_daylight_saving_included(business: Business) -> None:
    events, truth = sample(business)
    zones = {t.customer: ZoneInfo(t.timezone) for t in truth}
    offsets = set()
    at_home = {"support.contact", "feedback.rated", "complaint.filed", "booking.confirmed", "order.placed"}
    for event in events:
        time = at(event["time"])
        offsets.add(time.utcoffset())
        if event["type"] in at_home or business == "car_service":
            assert time.utcoffset() == time.astimezone(zones[event["subject"]]).utcoffset(), event
    assert len(offsets) >= 4  # several zones, and summer time from March on


def test_flights_are_stamped_in_the_local_time_of_their_airports() -> None:
    events, _ = sample("airline")
    airports = {"FRA": "Europe/Berlin", "JFK": "America/New_York", "DEL": "Asia/Kolkata", "SIN": "Asia/Singapore"}
    checked = 0
    for event in events:
        if event["type"] == "booking.confirmed" and event["data"]["origin"] in airports:
            departure = at(event["data"]["scheduled_departure"])
            zone = ZoneInfo(airports[event["data"]["origin"]])
            assert departure.utcoffset() == departure.astimezone(zone).utcoffset()
            checked += 1
    assert checked > 100


# What happens in each business -------------------------------------------------------------------------


def test_shop_parcels_are_mostly_on_time_some_late_some_damaged_a_few_never_delivered() -> None:
    events, _ = sample("shop")
    placed = {e["data"]["order_id"]: e for e in events if e["type"] == "order.placed"}
    delivered = {e["data"]["order_id"]: e for e in events if e["type"] == "order.delivered"}
    for order in placed.values():
        promised = at(order["data"]["promised_by"]) - at(order["time"])
        assert timedelta(days=1) < promised < timedelta(days=6)
    late = [o for o, e in delivered.items() if at(e["time"]) > at(placed[o]["data"]["promised_by"])]
    damaged = [o for o, e in delivered.items() if e["data"]["damaged"]]
    settled = max(at(e["time"]) for e in events) - timedelta(days=8)  # late parcels come within a week
    overdue = [o for o, e in placed.items() if o not in delivered and at(e["data"]["promised_by"]) < settled]
    assert 0.75 * len(delivered) < len(delivered) - len(late)
    assert 0.05 * len(delivered) < len(late) < 0.2 * len(delivered)
    assert 0.01 * len(delivered) < len(damaged) < 0.06 * len(delivered)
    assert 0.005 * len(placed) < len(overdue) < 0.04 * len(placed)
    returned = {e["data"]["order_id"] for e in events if e["type"] == "order.returned"}
    assert len(returned & set(damaged)) / len(damaged) > 3 * len(returned) / len(delivered)


def test_flight_delays_have_a_long_tail_and_bags_are_expected_an_hour_after_the_flight() -> None:
    events, _ = sample("airline")
    delays = [e["data"]["delay_minutes"] for e in events if e["type"] == "flight.arrived"]
    assert statistics.median(delays) < 30
    assert sum(d >= 180 for d in delays) > sum(d >= 360 for d in delays) > sum(d >= 720 for d in delays) > 0
    scheduled = {}
    for event in events:
        if event["type"] == "booking.confirmed":
            data = event["data"]
            scheduled[data["booking_ref"], data["flight_no"]] = at(data["scheduled_arrival"])
        if event["type"] == "bag.checked":
            data = event["data"]
            assert at(data["expected_by"]) == scheduled[data["booking_ref"], data["flight_no"]] + timedelta(hours=1)


def test_a_missed_connection_names_the_flight_missed_and_the_passenger_is_rebooked() -> None:
    events, _ = sample("airline")
    confirmed: defaultdict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for event in events:
        if event["type"] == "booking.confirmed":
            confirmed[event["data"]["booking_ref"]].append((at(event["time"]), event["data"]["flight_no"]))
    misses = [e for e in events if e["type"] == "connection.missed"]
    assert misses
    for miss in misses:
        booked = confirmed[miss["data"]["booking_ref"]]
        assert miss["data"]["next_flight_no"] in {flight for _, flight in booked}
        assert any(time > at(miss["time"]) for time, _ in booked)  # a new confirmation after the miss


def test_car_service_has_long_waits_late_jobs_and_rework_within_30_days() -> None:
    events, truth = sample("car_service")
    waits = [e["data"]["wait_minutes"] for e in events if e["type"] == "service.started"]
    assert 0.02 * len(waits) < sum(w >= 60 for w in waits) < 0.2 * len(waits)
    completed: dict[str, datetime] = {}
    rework = 0
    for event in events:
        vehicle = event["data"].get("vehicle_id")
        if event["type"] == "service.completed":
            completed[vehicle] = at(event["time"])
        elif event["type"] == "service.opened" and vehicle in completed:
            rework += at(event["time"]) - completed[vehicle] <= timedelta(days=30)
    assert rework > 0
    assert rework >= sum(t.failures.get("rework", 0) for t in truth if not t.churned) * 0.8


# Cause and effect --------------------------------------------------------------------------------------


@pytest.mark.parametrize("business", ["shop", "airline"])
def test_customers_who_suffered_more_failures_churn_and_complain_more(business: Business) -> None:
    _, truth = sample(business)

    def rate(group: list[CustomerTruth], what: str) -> float:
        return sum(bool(getattr(t, what)) for t in group) / len(group)

    spared = [t for t in truth if t.failures_total == 0]
    hurt = [t for t in truth if t.failures_total >= 2]
    assert len(spared) > 100
    assert len(hurt) > 100
    assert rate(hurt, "churned") > 2 * rate(spared, "churned")
    assert rate(hurt, "complained") > 5 * rate(spared, "complained")
    assert statistics.mean(t.satisfaction_end for t in hurt) < statistics.mean(t.satisfaction_end for t in spared)


def test_ratings_are_lower_for_orders_that_went_wrong() -> None:
    events, _ = sample("shop")
    promised = {e["data"]["order_id"]: at(e["data"]["promised_by"]) for e in events if e["type"] == "order.placed"}
    failed = {
        e["data"]["order_id"]
        for e in events
        if e["type"] == "order.delivered" and (e["data"]["damaged"] or at(e["time"]) > promised[e["data"]["order_id"]])
    }
    ratings = [(e["data"]["order_id"] in failed, e["data"]["rating"]) for e in events if e["type"] == "feedback.rated"]
    after_failure = [r for f, r in ratings if f]
    after_success = [r for f, r in ratings if not f]
    assert statistics.mean(after_success) - statistics.mean(after_failure) > 1.0


def test_only_customers_who_had_a_problem_contact_support_repeatedly() -> None:
    events, truth = sample("shop")
    hurt = {t.customer for t in truth if t.failures_total}
    per_week: Counter[tuple[str, int]] = Counter()
    for event in events:
        if event["type"] == "support.contact":
            per_week[event["subject"], at(event["time"]).toordinal() // 7] += 1
    busy = {customer for (customer, _), n in per_week.items() if n >= 3}
    assert busy
    assert busy <= hurt


# Streaming ---------------------------------------------------------------------------------------------


def test_the_stream_is_lazy_taking_the_first_events_generates_only_those() -> None:
    stream = generate_world("shop", customers=10_000, days=100, seed=1)  # a million customer-days
    first = list(islice(stream, 100))
    assert len(first) == 100
    assert stream.built == 100
    # Each customer's next visit and profile to come, a few later changes of profile, and a few open orders.
    assert stream.pending <= 2 * 10_000 + 500


def test_what_the_generator_holds_does_not_grow_with_the_events_produced() -> None:
    stream = generate_world("airline", customers=1000, days=3650, seed=2, late_share=0.02)
    held = []
    for n, _ in enumerate(islice(stream, 60_000), start=1):
        if n % 1000 == 0:
            held.append(stream.pending)
    early, late = held[: len(held) // 2], held[len(held) // 2 :]
    assert max(late) <= 1.25 * max(early)
    assert max(held) < 6 * 1000


# Writing -----------------------------------------------------------------------------------------------


def test_write_world_puts_the_ground_truth_beside_the_events_and_they_agree(tmp_path: Path) -> None:
    path = tmp_path / "shop.jsonl"
    summary = write_world(path, "shop", customers=1500, days=120, seed=3, late_share=0.02, duplicate_share=0.01)
    assert summary.truth_path == truth_path_for(path) == tmp_path / "shop.jsonl.truth.jsonl"
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    truth = [orjson.loads(line) for line in summary.truth_path.read_bytes().splitlines()]
    assert summary.events == len(events)
    assert summary.events_by_type == dict(sorted(Counter(e["type"] for e in events).items()))
    assert summary.duplicates == len(events) - len({e["id"] for e in events}) > 0
    assert [t["customer"] for t in truth] == [f"C-{n:06d}" for n in range(1, 1501)]
    assert summary.churned == sum(t["churned"] for t in truth) > 0
    assert summary.complained == sum(t["complained"] for t in truth) > 0

    unique = {e["id"]: e for e in events}.values()
    by_customer: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in unique:
        by_customer[event["subject"]].append(event)
    for record in truth:
        mine = by_customer[record["customer"]]
        complaints = sorted(at(e["time"]) for e in mine if e["type"] == "complaint.filed")
        assert record["complaints"] == len(complaints)
        assert record["complained"] == bool(complaints)
        if complaints:
            assert at(record["first_complaint_at"]) == complaints[0]
        stars = Counter(e["data"]["rating"] for e in mine if e["type"] == "feedback.rated")
        assert record["ratings"] == [stars[n] for n in range(1, 6)]
        assert record["contacts"] == sum(e["type"] == "support.contact" for e in mine)
        assert record["failures_total"] == sum(record["failures"].values())
        assert 0.0 <= record["satisfaction_end"] <= 1.0
        if record["churned"]:
            churned_at = at(record["churned_at"])
            assert all(at(e["time"]) < churned_at for e in mine if e["type"] == "order.placed")


def test_write_world_accepts_a_truth_path_and_the_cli_spelling(tmp_path: Path) -> None:
    summary = write_world(
        tmp_path / "garage.jsonl", "car-service", customers=50, days=30, seed=1, truth_path=tmp_path / "truth.jsonl"
    )
    assert summary.business == "car_service"
    assert summary.truth_path == tmp_path / "truth.jsonl"
    assert len(summary.truth_path.read_bytes().splitlines()) == 50
    assert summary.start == datetime(2025, 1, 1, tzinfo=UTC)
    assert summary.end == datetime(2025, 1, 31, tzinfo=UTC)


# Bad arguments -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"business": "bakery"}, "business"),
        ({"customers": 0}, "customers"),
        ({"days": -3}, "days"),
        ({"seed": 1.5}, "seed"),
        ({"start": datetime(2025, 1, 1)}, "start"),
        ({"late_share": 1.5}, "late_share"),
        ({"duplicate_share": -0.1}, "duplicate_share"),
        ({"late_share": 0.1, "max_lateness": timedelta(0)}, "max_lateness"),
    ],
)
def test_bad_arguments_are_refused_naming_the_parameter(arguments: dict[str, Any], field: str) -> None:
    call = {"business": "shop", "customers": 10, "days": 10, "seed": 1, **arguments}
    with pytest.raises(WorldError) as refused:
        generate_world(**call)
    assert refused.value.field == field


def test_business_names_accept_the_cli_spelling() -> None:
    assert [parse_business(name) for name in ("shop", "airline", "car-service", "car_service")] == [
        "shop",
        "airline",
        "car_service",
        "car_service",
    ]
