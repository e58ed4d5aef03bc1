"""The rule language: what loads, what is refused (with file, line and a sentence), and what conditions mean."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amends.detect import RuleSetError, load_rules, parse_rules
from amends.detect.conditions import compile_condition, parse_condition
from amends.detect.rules import AbsenceRule, CountRule, MatchRule, SequenceRule
from amends.durations import format_duration, parse_duration
from amends.events import Event

ISSUE_EXAMPLE = """\
rules:
  - id: late-delivery
    kind: absence                  # an expected event did not come in time
    after: order.placed            # starts the clock
    expect: order.delivered        # stops it
    key: data.order_id             # correlates the two events
    deadline: data.promised_by + 1d    # or a plain duration from the start event, e.g. 5d
    severity: 2
    playbook: late-delivery
  - id: long-flight-delay
    kind: match
    on: flight.arrived
    where: {data.delay_minutes: {gte: 180}}
    severity: {by: data.delay_minutes, steps: [[180, 2], [360, 3], [720, 4]]}
  - id: contact-storm
    kind: count
    on: support.contact
    at_least: 3
    within: 7d
  - id: rework
    kind: sequence
    first: service.completed
    then: service.opened
    key: data.vehicle_id
    within: 30d
"""


def event(data: dict[str, Any] | None = None, **envelope: Any) -> Event:
    fields: dict[str, Any] = {
        "id": "e-1",
        "source": "https://shop.example.com",
        "type": "order.placed",
        "time": datetime(2025, 3, 1, 9, tzinfo=UTC),
        "subject": "C-1",
    }
    fields.update(envelope)
    return Event(data=data or {}, **fields)


def problems(text: str) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        parse_rules([(Path("rules/shop.yaml"), text)])
    return [str(problem) for problem in caught.value.problems]


def test_the_example_of_the_issue_loads_as_four_kinds() -> None:
    rules = parse_rules([(Path("rules/shop.yaml"), ISSUE_EXAMPLE)])

    late, delay, storm, rework = rules.rules
    assert isinstance(late, AbsenceRule)
    assert late.key.text == "data.order_id"
    assert late.deadline.offset == timedelta(days=1)
    assert late.common.playbook == "late-delivery"
    assert late.common.line == 2
    assert isinstance(delay, MatchRule)
    assert isinstance(storm, CountRule)
    assert storm.key.text == "subject"
    assert (storm.at_least, storm.within) == (3, timedelta(days=7))
    assert isinstance(rework, SequenceRule)
    assert rework.within == timedelta(days=30)
    # The stepped severity reads the event.
    assert [delay.common.severity.of(event({"delay_minutes": m})) for m in (200, 360, 800)] == [2, 3, 4]


def test_a_deadline_reads_a_timestamp_of_the_start_event_plus_an_offset() -> None:
    rules = parse_rules([(None, ISSUE_EXAMPLE)])
    late = rules.get("late-delivery")
    assert isinstance(late, AbsenceRule)

    start = event({"promised_by": "2025-03-04T18:00:00+01:00"})
    assert late.deadline.at(start) == datetime(2025, 3, 5, 17, tzinfo=UTC)
    # A missing, naive or malformed timestamp gives no deadline (the event is skipped for the rule).
    for bad in (None, "2025-03-04", "2025-03-04T18:00:00", "soon", 1741100000):
        assert late.deadline.at(event({"promised_by": bad})) is None


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("rules:\n  - id: a\n    kind: sometimes\n    on: x\n", 3, "rules[0].kind: unknown kind 'sometimes'"),
        (
            "rules:\n  - id: a\n    kind: match\n    on: x\n    where:\n      data.d: {gtx: 1}\n",
            6,
            "rules[0].where.data.d.gtx: unknown operator 'gtx'",
        ),
        ("rules:\n  - id: a\n    kind: count\n    on: x\n    at_least: 3\n    within: 7 days\n", 6, "bad"),
        ("rules:\n  - id: a\n    kind: absence\n    after: x\n    expect: y\n    deadline: 5d\n", 2, "rules[0].key"),
        ("rules:\n  - id: a\n    kind: match\n    on: x\n  - id: a\n    kind: match\n    on: y\n", 5, "duplicate"),
        ("rules:\n  - id: a\n    kind: match\n    on: x\n    on: y\n", 5, "rules[0].on: duplicate key"),
        ("rules:\n  - id: a\n    kind: match\n    on: x\n    window: 3d\n", 5, "rules[0].window: unknown field"),
        ("rules:\n  - id: a\n    kind: match\n    on: x\n    key: order_id\n", 5, "rules[0].key: a path starts"),
        ("rules: [\n", 2, "not valid YAML"),
    ],
)
def test_every_problem_names_file_line_and_field(text: str, line: int, expected: str) -> None:
    found = problems(text)

    assert len(found) == 1, found
    assert found[0].startswith(f"rules/shop.yaml:{line}: "), found
    if expected == "bad":
        assert "expected a duration like '30m', '36h', '7d' or '1d12h', got '7 days'" in found[0]
    else:
        assert expected in found[0]


def test_all_problems_of_all_files_are_reported_and_nothing_loads(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ISSUE_EXAMPLE)
    (tmp_path / "b.yml").write_text("rules:\n  - id: rework\n    kind: match\n    on: x\n  - id: ok\n    kind: nope\n")
    (tmp_path / "notes.txt").write_text("not a rule file")

    with pytest.raises(RuleSetError) as caught:
        load_rules([tmp_path])

    found = [str(problem) for problem in caught.value.problems]
    assert len(found) == 2
    assert (
        f"{tmp_path / 'b.yml'}:2: id: duplicate rule id 'rework' (first defined at {tmp_path / 'a.yaml'}:20)" in found
    )
    assert any(f"{tmp_path / 'b.yml'}:6: rules[1].kind: unknown kind 'nope'" in f for f in found)


def test_disabled_rules_load_but_do_not_run() -> None:
    text = "rules:\n  - id: a\n    kind: match\n    on: x\n    enabled: false\n  - id: b\n    kind: match\n    on: y\n"
    rules = parse_rules([(None, text)])
    assert [r.common.id for r in rules] == ["b"]
    assert [r.common.id for r in rules.disabled] == ["a"]


def test_no_code_runs_from_a_rule_file() -> None:
    # A YAML tag that would build a Python object is refused by the safe loader.
    found = problems("rules: !!python/object/apply:os.system ['true']\n")
    assert "not valid YAML" in found[0]


def test_durations_round_trip() -> None:
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert format_duration(timedelta(days=1, hours=12)) == "1d12h"
    for bad in ("", "7", "7 days", "-1d", "0d", "1.5h", "d"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


# --- what conditions mean -------------------------------------------------------------------------------


def truth(condition: dict[str, Any], data: dict[str, Any], **envelope: Any) -> bool | None:
    return compile_condition(parse_condition(condition))(event(data, **envelope))


def test_comparisons_are_typed_and_unknown_on_missing_fields() -> None:
    assert truth({"data.d": {"gte": 180}}, {"d": 200}) is True
    assert truth({"data.d": {"gte": 180}}, {"d": 179.5}) is False
    assert truth({"data.d": {"gte": 180}}, {"d": "200"}) is None  # text is not a number
    assert truth({"data.d": {"gte": 180}}, {"d": True}) is None  # nor is true
    assert truth({"data.d": {"gte": 180}}, {}) is None
    assert truth({"data.d": {"gte": 180}}, {"d": None}) is None
    assert truth({"data.d": 1}, {"d": 1.0}) is True
    assert truth({"data.d": 1}, {"d": "1"}) is False
    assert truth({"data.d": 1}, {"d": True}) is False
    assert truth({"data.d": True}, {"d": 1}) is False
    assert truth({"data.d": {"ne": "x"}}, {}) is None
    assert truth({"data.c": ["email", "phone"]}, {"c": "phone"}) is True
    assert truth({"data.c": {"nin": ["email", "phone"]}}, {"c": "web"}) is True
    assert truth({"data.s": {"contains": "broke"}}, {"s": "it broke"}) is True
    assert truth({"data.s": {"contains": "x"}}, {"s": ["x", "y"]}) is True
    assert truth({"data.s": {"contains": "x"}}, {"s": 5}) is None
    assert truth({"data.s": {"lt": "m"}}, {"s": "a"}) is True
    assert truth({"data.items.1.sku": "B"}, {"items": [{"sku": "A"}, {"sku": "B"}]}) is True
    assert truth({"data.items.5.sku": "B"}, {"items": [{"sku": "A"}]}) is None
    assert truth({"data.x": {"exists": False}}, {}) is True
    assert truth({"data.x": {"exists": True}}, {"x": 0}) is True
    assert truth({"type": "order.placed"}, {}) is True


def test_logic_is_three_valued() -> None:
    assert truth({"not": {"data.d": {"gte": 1}}}, {}) is None  # a missing field never makes a rule match
    assert truth({"any": [{"data.d": {"gte": 1}}, {"data.e": 1}]}, {"e": 1}) is True
    assert truth({"any": [{"data.d": {"gte": 1}}, {"data.e": 1}]}, {"e": 2}) is None
    assert truth({"all": [{"data.d": {"gte": 1}}, {"data.e": 1}]}, {"e": 2}) is False
    assert truth({"data.d": {"gte": 1, "lt": 5}}, {"d": 5}) is False  # several operators: all of them
