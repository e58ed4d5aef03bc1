"""The envelope: what amends accepts as an event, and the reasons it gives when it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from amends.events import Event, Violation, validate_event
from tests.conftest import an_event


def test_a_valid_event_keeps_its_attributes_and_its_time_in_utc() -> None:
    event = validate_event(an_event(1, time="2026-05-01T10:00:00+02:00"))
    assert isinstance(event, Event)
    assert event.time == datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    assert event.time.utcoffset() is not None
    assert event.time.tzinfo is UTC
    assert (event.id, event.subject, event.data["order_id"]) == ("evt-1", "C-1", "O-1")
    assert event.attributes is None


def test_a_naive_time_is_refused() -> None:
    assert validate_event(an_event(time="2026-05-01T10:00:00")) == Violation(
        "time", "needs a time zone, e.g. 2024-05-01T12:00:00Z or +02:00"
    )


@pytest.mark.parametrize("missing", ["id", "source", "type", "time", "subject"])
def test_a_missing_required_attribute_is_named(missing: str) -> None:
    assert validate_event(an_event(**{missing: None})) == Violation(missing, "required")


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"time": "yesterday"}, "time", "expected an RFC 3339 timestamp"),
        ({"subject": 42}, "subject", "string"),
        ({"subject": ""}, "subject", "at least 1 character"),
        ({"data": [1, 2]}, "data", "dictionary"),
        ({"specversion": "0.3"}, "specversion", "only CloudEvents 1.0"),
        ({"id": "x" * 501}, "id", "at most 500"),
        ({"data_base64": "AAAA"}, "data_base64", "binary data is not accepted"),
        ({"datacontenttype": "text/xml"}, "datacontenttype", "JSON media type"),
        ({"Trace-Id": "abc"}, "Trace-Id", "extension names"),
        ({"traceparent": {"nested": True}}, "traceparent", "string, integer or boolean"),
    ],
)
def test_a_wrong_attribute_is_named_with_the_reason(changes: dict[str, object], field: str, reason: str) -> None:
    outcome = validate_event(an_event(**changes))
    assert isinstance(outcome, Violation)
    assert outcome.field == field
    assert reason in outcome.reason


def test_a_non_object_item_is_refused_with_what_it_was() -> None:
    assert validate_event([1]) == Violation("event", "expected a JSON object, got an array")
    assert validate_event("x") == Violation("event", "expected a JSON object, got a string")


def test_extensions_and_optional_attributes_are_kept_as_sent() -> None:
    event = validate_event(
        an_event(traceparent="00-abc-def-01", partitionkey="C-1", datacontenttype="application/json")
    )
    assert isinstance(event, Event)
    assert event.attributes == {
        "traceparent": "00-abc-def-01",
        "partitionkey": "C-1",
        "datacontenttype": "application/json",
    }
    assert event.envelope()["traceparent"] == "00-abc-def-01"


def test_data_is_optional_and_defaults_to_an_empty_object() -> None:
    event = validate_event(an_event(data=None))
    assert isinstance(event, Event)
    assert event.data == {}
