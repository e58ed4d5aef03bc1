"""Fuzzing the parsers: every input either loads or fails with the clear error of its kind; no crash, no hang.

Hypothesis drives the rule language (detect/rules.py over yamldoc.py), the condition evaluator
(detect/conditions.py, and the streaming evaluator reading arbitrary event data), the template checker
(outreach/templates.py), file ingest (events/files.py: CSV, JSONL, Parquet) and the Olist importer
(events/olist.py). Each gets inputs shaped like the real grammar or schema but wrong, mutations of the valid
samples amends ships (the packs, tests/fixtures/olist), and raw garbage. An error of the module's own kind must
say where (a file's line or field, a row) and why; any other exception is a failure, and so is a hang (each
example has a deadline, each test a timeout).

The CI budget is fixed and derandomized. A long run explores afresh with more examples per test, e.g.

    AMENDS_FUZZ_EXAMPLES=5000 .venv/bin/pytest -q tests/test_fuzz_parsers.py

Each defect fuzzing found is pinned by an `@example` of the test that found it.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, reject, settings
from hypothesis import strategies as st

from amends.detect import Evaluator, RuleSet, load_rules, parse_rules
from amends.detect.conditions import COMPARISONS, ConditionProblem, compile_condition, parse_condition
from amends.detect.errors import RuleSetError
from amends.detect.packs import pack_paths
from amends.detect.rules import event_types
from amends.errors import InvalidInput
from amends.events import Event, validate_event
from amends.events.files import ColumnMapping, FileReport, ingest_file
from amends.events.ledger import Appended, LedgerRows, ledger_rows
from amends.events.olist import OLIST_FILES, olist_events
from amends.outreach.packs import TEMPLATES_DIR
from amends.outreach.templates import (
    STEPS,
    TemplateRenderError,
    TemplateSet,
    TemplateSetError,
    parse_templates,
    preview_context,
    render,
)
from amends.store import Database
from amends.yamldoc import FileProblemsError

T = TypeVar("T")

# --- the budget ------------------------------------------------------------------------------------------

_LONG_RUN = int(os.environ.get("AMENDS_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int, *, deadline_seconds: float = 2.0) -> settings:
    """`examples` in CI, derandomized (the same inputs every run); AMENDS_FUZZ_EXAMPLES of fresh ones in a long
    run, which keeps what fails in .hypothesis/ to try first next time. The deadline is per example: a hundred
    times a normal parse, so a slow one is a hang in the making (five times that in a long run, which often
    shares the machine)."""
    return settings(
        max_examples=_LONG_RUN or examples,
        derandomize=not _LONG_RUN,
        database=None if not _LONG_RUN else settings.default.database,
        deadline=timedelta(seconds=deadline_seconds * (5 if _LONG_RUN else 1)),
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],  # explaining traces: slow
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def within(seconds: int, examples: int) -> pytest.MarkDecorator:
    """The test's timeout: `seconds` for the CI budget of `examples`, scaled up for a long run."""
    scale = max(1.0, _LONG_RUN / examples) if _LONG_RUN else 1.0
    return pytest.mark.timeout(int(seconds * scale) + 30)


# --- what every failure must look like ------------------------------------------------------------------


# Words of Pydantic's (`severity.constrained-int`, `severity._Steps`) and of Python's, not the author's.
_MODEL_WORDS = re.compile(r"constrained-|function-|(^|\.)_[A-Z]")
_PYTHON_WORDS = re.compile(r"\[<class |sys\.set_int_max_str_digits|Traceback")


def assert_clear_problems(error: FileProblemsError) -> None:
    """Each problem of a file names its place (a field or a line) and a reason in words."""
    assert error.problems, "an error with no problem in it"
    for problem in error.problems:
        assert problem.reason.strip(), f"a problem without a reason: {problem!r}"
        assert not _PYTHON_WORDS.search(problem.reason), f"a reason in Python's words: {problem}"
        assert problem.field or problem.line is not None, f"a problem naming neither field nor line: {problem}"
        assert not _MODEL_WORDS.search(problem.field), f"a field named in Pydantic's words, not the file's: {problem}"
    assert str(error)


def assert_clear_input_error(error: InvalidInput) -> None:
    assert error.reason.strip(), f"{type(error).__name__} without a reason"
    assert not _PYTHON_WORDS.search(error.reason), f"a reason in Python's words: {error}"
    assert error.field.strip(), f"{type(error).__name__} naming no field: {error}"


def loads_or_refuses(call: Callable[[], T], kind: type[FileProblemsError]) -> T | None:
    """The result of `call`, or None when it raised `kind` with clear problems; anything else is raised on."""
    try:
        return call()
    except kind as exc:
        assert_clear_problems(exc)
        return None


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the examples' files are written, each under a name of its own (`a_new_file`)."""
    return tmp_path_factory.mktemp("fuzz-files")


_files = itertools.count()


def a_new_file(folder: Path, suffix: str) -> Path:
    """A name never used before, so that no reader's cache of an earlier file answers for it."""
    return folder / f"fuzz-{next(_files)}.{suffix}"


# --- mutation of valid samples ----------------------------------------------------------------------------

# Scalars that have broken parsers: wrong types, edges of numbers and times, YAML's own traps.
_YAML_VALUES = [
    "", "~", "null", "[]", "{}", "[1]", "[[1]]", "{a: 1}", "{? [a]: 1}", "-1", "0", "1.5", "1e400", "-1e400",
    ".nan", ".inf", "-.inf", "9" * 5000, "99999999999999999999", "0x1F", "0o17", "2025-01-01",
    "2025-01-01T00:00:00Z", "'0001-01-01T00:00:00+01:00'", "'9999-12-31T23:59:59Z'", "'9999-12-31T23:59:59-01:00'",
    "true", "yes", "on", "off", '"\\0"', '"\\x00"', '"\\uD800"', "!!binary aGVsbG8=", "!!python/object:os.system",
    "!!set {a}", "!!omap [a: 1]", "*a", "&a x", "<<: {a: 1}", "'" + "999999w" * 300 + "'", "1d12h", "0s", "7 days",
    "-5d", "data.", "data..a", "data.a.0.b", "data.0", "subject.x", "x" * 300, "|\n    multi\n    line",
    "[" * 300 + "]" * 300, "{a: " * 150 + "1" + "}" * 150, "- - - - -", "'", '"', "{", "[", ": :", "\t", "\x85",
    "%YAML 1.1", "---", "...", "#", "@", "`", "?",
]  # fmt: skip


@st.composite
def mutated_yaml(draw: st.DrawFn, samples: Sequence[str]) -> str:
    """A valid sample with a few of its lines dropped, repeated, re-indented, or given another value."""
    lines = draw(st.sampled_from(samples)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        line = lines[at]
        action = draw(st.sampled_from(["value", "value", "value", "drop", "repeat", "indent", "insert", "cut"]))
        if action == "value" and ":" in line:
            head = line.split(":", 1)[0]
            lines[at] = f"{head}: {draw(st.sampled_from(_YAML_VALUES) | st.text(max_size=20))}"
        elif action == "value" and line.lstrip().startswith("- "):
            lines[at] = line[: line.index("-") + 2] + draw(st.sampled_from(_YAML_VALUES))
        elif action == "drop":
            del lines[at]
        elif action == "repeat":
            lines.insert(at, line)
        elif action == "indent":
            lines[at] = " " * draw(st.integers(0, 8)) + line.lstrip()
        elif action == "insert":
            lines.insert(at, draw(st.sampled_from(_YAML_VALUES) | st.text(max_size=30)))
        else:
            lines[at] = line[: draw(st.integers(0, len(line)))]
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""]))


def _garbage_text() -> st.SearchStrategy[str]:
    """Raw text, and text made of the tokens YAML is built of."""
    tokens = st.sampled_from([*_YAML_VALUES, "\n", "\n  ", "\n- ", ": ", "- ", "rules:", "templates:", "kind: "])
    return st.text() | st.lists(tokens, max_size=40).map("".join)


# --- the rule language ------------------------------------------------------------------------------------

PACKS = {path.name: path.read_text() for path in pack_paths(["shop", "airline", "car_service"])}
FUZZ_FILE = Path("fuzz.yaml")
T0 = datetime(2025, 3, 1, tzinfo=UTC)

_PATHS = [
    "data.order_id", "data.delay_minutes", "data.promised_by", "data.items.0.sku", "data.a.b.c", "subject", "type",
    "source", "id", "data", "data.", "data..x", "subject.x", "time", "data.x y", "data.-1", "data.9999999",
    "data." + "a" * 101, "Data.x", "",
]  # fmt: skip
_KEYS = [*_PATHS, "all", "any", "not", *COMPARISONS, "where", "gte ", "ALL"]


def json_scalars() -> st.SearchStrategy[Any]:
    return (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=30)
        | st.sampled_from(["", "2025-03-01T09:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"])
    )


def condition_like() -> st.SearchStrategy[Any]:
    """Values shaped like a condition: mappings of paths, operators and all/any/not, nested, right or wrong."""

    def nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        keys = st.sampled_from(_KEYS) | st.text(max_size=8) | st.integers()
        return st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)

    return st.recursive(json_scalars(), nested, max_leaves=20)


def _durations() -> st.SearchStrategy[Any]:
    return st.sampled_from(["7d", "1d12h", "30m", "0s", "-1d", "7 days", "999999w" * 300, "1x", ""]) | json_scalars()


@st.composite
def rule_documents(draw: st.DrawFn) -> Any:
    """A rule file's document: rules of every kind, each field right, wrong or missing, plus unknown keys."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "id": st.sampled_from(["late", "a.b-c_d", "Late", "-x", "x" * 101, ""]) | json_scalars(),
        "kind": st.sampled_from(["match", "absence", "count", "sequence", "risk", "Match"]) | condition_like(),
        "on": st.sampled_from(["order.placed", "flight.arrived", "", "x" * 201]) | json_scalars(),
        "after": st.sampled_from(["order.placed"]) | json_scalars(),
        "expect": st.sampled_from(["order.delivered"]) | json_scalars(),
        "first": st.sampled_from(["service.completed"]) | json_scalars(),
        "then": st.sampled_from(["service.opened"]) | json_scalars(),
        "where": condition_like(),
        "expect_where": condition_like(),
        "first_where": condition_like(),
        "then_where": condition_like(),
        "key": st.sampled_from(_PATHS) | json_scalars(),
        "deadline": st.sampled_from(["5d", "data.promised_by", "data.promised_by + 1d", "data.x - 2h", "data.x +",
                                     "+ 1d", "data.x + 999999w999999w999999w" * 50, "subject"]) | json_scalars(),
        "within": _durations(),
        "cooldown": _durations(),
        "watch_late_for": _durations(),
        "at_least": st.sampled_from([2, 3, 0.4, 1, 0, 10_001, 2**70]) | json_scalars(),
        "top": json_scalars(),
        "severity": st.integers(-2, 7) | st.fixed_dictionaries(
            {"by": st.sampled_from(_PATHS), "steps": st.lists(st.tuples(json_scalars(), st.integers(0, 6)))},
            optional={"default": json_scalars()},
        ) | condition_like(),
        "tags": st.lists(json_scalars(), max_size=3) | json_scalars(),
        "enabled": json_scalars(),
        "playbook": json_scalars(),
        "description": json_scalars(),
        "surprise": json_scalars(),
    }  # fmt: skip
    rules = []
    for _ in range(draw(st.integers(0, 3))):
        chosen = draw(st.sets(st.sampled_from(sorted(fields)), min_size=1))
        rules.append({name: draw(fields[name]) for name in sorted(chosen)})
    document: dict[Any, Any] = {"rules": rules}
    if draw(st.booleans()):
        document[draw(st.sampled_from(["extra", 1, None, "rules ", True]))] = draw(json_scalars())
    return document if draw(st.integers(0, 9)) else draw(condition_like())


def as_yaml(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def load_rule_text(text: str) -> RuleSet | None:
    return loads_or_refuses(lambda: parse_rules([(FUZZ_FILE, text)]), RuleSetError)


def a_rule(**fields: Any) -> dict[str, Any]:
    return {"rules": [{"id": "fuzz", "kind": "match", "on": "order.placed", **fields}]}


@within(40, 200)
@fuzz(200)
@given(rule_documents())
@example(a_rule(kind=[1])).via("a kind that is a list: TypeError, unhashable")
@example({"rules": [], 1: 2, None: 3}).via("top-level keys of several types: TypeError sorting them")
@example(a_rule(kind="count", at_least=2, within="999999w" * 300)).via("a duration past timedelta: OverflowError")
@example(a_rule(severity={"by": "data.x", "steps": [[float("nan"), 2]]})).via("a NaN threshold was accepted")
@example(a_rule(severity="x")).via("the field named `severity.constrained-int` and `severity._Steps`")
@example(a_rule(where={"data.x": 10**400})).via("a number no double holds: OverflowError in the batch evaluator")
def test_a_rule_file_of_any_shape_loads_or_names_its_problems(document: Any) -> None:
    load_rule_text(as_yaml(document))


@within(40, 300)
@fuzz(300)
@given(mutated_yaml(list(PACKS.values())))
@example("rules:\n  - id: a\n    kind: match\n    on: x\n    severity: " + "9" * 5000).via(
    "an integer of more than 4,300 digits: ValueError from PyYAML"
)
@example("rules: " + "[" * 2000 + "]" * 2000).via("deep nesting: RecursionError composing the YAML")
@example("rules:\n  - id: a\n    kind: match\n    on: x\n    where: " + "{not: " * 400 + "{data.a: 1}" + "}" * 400)
def test_a_mutated_rule_pack_loads_or_names_its_problems(text: str) -> None:
    load_rule_text(text)


@within(30, 300)
@fuzz(300)
@given(_garbage_text())
@example("rules: \x08").via("a control character: a problem with neither line nor field")
def test_any_text_as_a_rule_file_loads_or_names_its_problems(text: str) -> None:
    load_rule_text(text)


@within(20, 100)
@fuzz(100)
@given(st.binary(max_size=300) | mutated_yaml(list(PACKS.values())).map(lambda text: text.encode("utf-16")))
@example(b"rules:\n  - id: caf\xe9").via("not UTF-8: a problem with neither line nor field")
def test_any_bytes_as_a_rule_file_load_or_are_refused(folder: Path, raw: bytes) -> None:
    path = a_new_file(folder, "yaml")
    path.write_bytes(raw)
    loads_or_refuses(lambda: load_rules([path]), RuleSetError)


# --- conditions: parsing, and evaluating over arbitrary event data -----------------------------------------


def nested_not(levels: int) -> dict[str, Any]:
    condition: dict[str, Any] = {"data.a": 1}
    for _ in range(levels):
        condition = {"not": condition}
    return condition


@within(30, 500)
@fuzz(500)
@given(condition_like())
@example(nested_not(5000)).via("RecursionError parsing a condition built in Python")
@example({"data.a": 10**400}).via("an integer no double holds")
def test_any_condition_parses_or_names_its_place(raw: Any) -> None:
    try:
        condition = parse_condition(raw)
    except ConditionProblem as exc:
        assert_clear_condition_problem(exc)
        return
    compile_condition(condition)


def assert_clear_condition_problem(problem: ConditionProblem) -> None:
    assert problem.reason.strip()
    assert isinstance(problem.where, tuple)


_DATA_KEYS = sorted({*re.findall(r"data\.([A-Za-z_]+)", "\n".join(PACKS.values())), "a", "b", "items", "n"})
_READ_PATHS = [
    *(f"data.{key}" for key in _DATA_KEYS), "data.a.b", "data.items.0", "data.items.0.sku", "data.items.5",
    "data.a.0.b.1", "subject", "type", "source", "id",
]  # fmt: skip
_EDGE_TIMES = ["2025-03-01T09:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z",
               "0001-01-01T00:00:00+01:00", "2025-03-01T09:00:00", "2025-02-30T09:00:00Z"]  # fmt: skip


def json_values() -> st.SearchStrategy[Any]:
    """What an event's data can hold: JSON, with numbers at the edges, times at the edges, and deep nesting."""
    leaves = json_scalars() | st.sampled_from(_EDGE_TIMES) | st.integers(-(2**64), 2**64)

    def nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_DATA_KEYS) | st.text(), inner)

    return st.recursive(leaves, nested, max_leaves=12)


def event_data() -> st.SearchStrategy[dict[str, Any]]:
    """The facts the rules read, often holding plausible values or times at the edges, and others."""
    fact = st.sampled_from([*_EDGE_TIMES, "O-1", "O-2", "V-1", 0, 180, 420, True, None]) | json_values()
    return st.dictionaries(st.sampled_from(_DATA_KEYS), fact, max_size=8) | st.dictionaries(
        st.text(max_size=5), json_values(), max_size=3
    )


def conditions() -> st.SearchStrategy[dict[str, Any]]:
    """Valid conditions, in their YAML form, over the paths events are given, nested in all, any and not."""
    number = st.integers(-(2**64), 2**64) | st.floats(allow_nan=False)
    scalar = st.booleans() | number | st.text(max_size=10)
    operator = (
        st.tuples(st.sampled_from(["eq", "ne"]), scalar)
        | st.tuples(st.sampled_from(["gt", "gte", "lt", "lte", "contains"]), number | st.text(max_size=10))
        | st.tuples(st.sampled_from(["in", "nin"]), st.lists(scalar, min_size=1, max_size=3))
        | st.tuples(st.just("exists"), st.booleans())
    )
    test = scalar | st.lists(scalar, min_size=1, max_size=3) | operator.map(lambda pair: {pair[0]: pair[1]})
    compare = st.builds(lambda path, tested: {path: tested}, st.sampled_from(_READ_PATHS), test)

    def combined(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        parts = st.lists(inner, min_size=1, max_size=3)
        return (
            st.builds(lambda items: {"all": items}, parts)
            | st.builds(lambda items: {"any": items}, parts)
            | st.builds(lambda item: {"not": item}, inner)
        )

    return st.recursive(compare, combined, max_leaves=8)


def an_event(data: dict[str, Any]) -> Event:
    return Event("e-1", "https://example.com", "order.placed", T0, "C-1", data)


@within(30, 500)
@fuzz(500)
@given(conditions(), event_data())
def test_a_condition_over_any_event_data_is_true_false_or_unknown(raw: dict[str, Any], data: dict[str, Any]) -> None:
    event = an_event(data)
    truth = compile_condition(parse_condition(raw))(event)
    assert truth in (True, False, None)
    negated = compile_condition(parse_condition({"not": raw}))(event)
    assert negated == (None if truth is None else not truth)  # three-valued logic, whatever the data


PACK_RULES = load_rules(pack_paths(["shop", "airline", "car_service"]))
_EVENT_TYPES = sorted({event_type for rule in PACK_RULES for event_type in event_types(rule)})


def an_envelope(event_type: str, *, time: str = "2025-03-01T09:00:00Z", **data: Any) -> dict[str, Any]:
    return {"source": "https://example.com", "type": event_type, "time": time, "subject": "C-1", "data": data}


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """An event as a company's system might send it: a type the packs read, their facts holding anything."""
    hours = draw(st.integers(0, 24 * 60))
    time = (T0 + timedelta(hours=hours)).isoformat()
    return {
        "source": "https://example.com",
        "type": draw(st.sampled_from(_EVENT_TYPES)),
        "time": draw(st.sampled_from(_EDGE_TIMES)) if draw(st.integers(0, 4)) == 0 else time,
        "subject": draw(st.sampled_from(["C-1", "C-2"])),
        "data": draw(event_data()),
    }


@within(60, 150)
@fuzz(150, deadline_seconds=5)
@given(st.lists(envelopes(), max_size=12))
@example([an_envelope("order.placed", order_id="O-1", promised_by="9999-12-31T23:59:59Z")]).via(
    "a deadline field at the end of time: OverflowError adding the offset"
)
@example([an_envelope("order.placed", time="9999-12-31T22:00:00Z", order_id="O-1", promised_by=_EDGE_TIMES[0])]).via(
    "an event at the end of time: OverflowError adding watch_late_for to its deadline"
)
@example([an_envelope("order.placed", time="0001-01-01T00:00:00+01:00")]).via(
    "OverflowError converting a time in year 1 to UTC"
)
@example([an_envelope("order.placed", big=2**64)]).via("TypeError: orjson cannot write an integer past 64 bits")
def test_the_shipped_rules_evaluate_any_events_they_are_given(items: list[dict[str, Any]]) -> None:
    outcomes = [validate_event({**item, "id": f"e-{n}"}) for n, item in enumerate(items)]  # each stored once
    events = [outcome for outcome in outcomes if isinstance(outcome, Event)]
    evaluator = Evaluator(PACK_RULES)
    evaluator.observe(events)
    evaluator.advance()
    evaluator.advance(datetime.max.replace(tzinfo=UTC))  # every timer is due


# --- the template checker, and rendering what it passed ---------------------------------------------------

SHIPPED_TEMPLATES = {path.name: path.read_text() for path in sorted(TEMPLATES_DIR.glob("*.yaml"))}
GENERIC = SHIPPED_TEMPLATES["generic.yaml"]

_JINJA = [
    "Hello ", "\n", "{{ customer.name }}", "{{ customer.nme }}", "{{ incident.data.order_id }}",
    "{{ incident.data.flight_no | default('your flight') }}", "{{ incident.data['order_id'] }}",
    "{{ incident.data[customer.id] }}", "{{ remedy.amount | money }}", "{{ remedy.amount | money('USD') }}",
    "{{ incident.data.delay_minutes | minutes }}", "{{ incident.failure_at | day }}", "{{ now | day }}",
    "{{ customer.name | day }}", "{{ company.name | amount }}", "{{ case.id | minutes }}", "{{ 'x' * 100000 }}",
    "{{ [1] * 20000 }}", "{{ 2 ** 1000 }}", "{{ 10 ** 10 ** 10 }}", "{{ 1 / 0 }}", "{{ 1 // 0 }}", "{{ 'a' + 1 }}",
    "{{ customer.__class__ }}", "{{ ''.__class__.__mro__ }}", "{{ range(10**9) | list }}", "{{ lipsum() }}",
    "{% set customer = 1 %}", "{% for i in range(3) %}", "{% endfor %}", "{% if customer.name %}", "{% else %}",
    "{% endif %}", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "{% raw %}", "{% endraw %}", "{{", "}}", "{%",
    "%}", "{#", "#}", "{{ links.feedback }}", "{{ request.reference }}", "{{ incident.first_data.job_id }}",
    "{{ incident.risk | amount }}", "{{ now.year }}", "{{ now.replace(year=1) }}", "{% include 'x' %}",
    "{% extends 'x' %}", "{{ self }}", "{{ x }}", "{{ customer | attr('__dict__') }}", "{{ 'é' }}", "\x00",
]  # fmt: skip


def jinja_sources() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(_JINJA) | st.text(max_size=10), min_size=1, max_size=8).map("".join)


@st.composite
def template_documents(draw: st.DrawFn) -> Any:
    """A template file's document: templates with each field right, wrong or missing."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "id": st.sampled_from(["fuzz", "fuzz-2", "Fuzz", ""]) | json_scalars(),
        "step": st.sampled_from([*STEPS, "take_ownership", "empathize", ""]) | json_scalars(),
        "rule": st.sampled_from(["shop-late-delivery", "Bad Rule"]) | json_scalars(),
        "language": st.sampled_from(["en", "de", "es", "fr", "pt", "xx", "EN", "de-AT", ""]) | json_scalars(),
        "requires": st.lists(st.sampled_from(["incident", "incident.data.order_id", "remedy.text", "request",
                                              "customer.nme", "x", "incident..data", "", "now.year"])) | json_scalars(),
        "samples": st.dictionaries(st.sampled_from(["incident.data.order_id", "x"]), json_values(), max_size=2)
        | json_scalars(),
        "subject": jinja_sources() | json_scalars(),
        "text": jinja_sources() | json_scalars(),
        "html": jinja_sources() | json_scalars(),
        "surprise": json_scalars(),
    }  # fmt: skip
    required = ["id", "step", "language", "subject", "text"]
    templates = []
    for _ in range(draw(st.integers(1, 3))):
        chosen = [name for name in fields if (name in required) != (draw(st.integers(0, 5)) == 0)]
        templates.append({name: draw(fields[name]) for name in chosen})
    return {"templates": templates} if draw(st.integers(0, 9)) else draw(condition_like())


def load_template_texts(*texts: str) -> TemplateSet | None:
    sources = [(Path(f"fuzz-{n}.yaml"), text) for n, text in enumerate(texts)]
    return loads_or_refuses(lambda: parse_templates(sources), TemplateSetError)


def renders_or_refuses(templates: TemplateSet, context: dict[str, Any]) -> None:
    """Each template renders with `context`, or fails as TemplateRenderError naming the template and its part."""
    for template in templates:
        try:
            render(template, context)
        except TemplateRenderError as exc:
            assert_clear_input_error(exc)


def a_template(text: str) -> dict[str, Any]:
    """A file with one template, for a rule (so it stands beside the generic ones), saying `text`."""
    template = {"id": "fuzz", "step": "empathise", "rule": "fuzz-rule", "language": "en", "subject": "Hi"}
    return {"templates": [{**template, "text": text}]}


@within(60, 150)
@fuzz(150, deadline_seconds=5)
@given(template_documents(), st.booleans())
@example(a_template("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"), True).via("RecursionError rendering")
@example(a_template("{{ " + "(" * 300 + "1" + ")" * 300 + " }}"), True).via("RecursionError parsing")
@example(a_template("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"), True).via(
    "ten billion loop steps: a hang"
)
@example(a_template("{% for a in range(99999) %}{{ 'x' * 9999 }}{% endfor %}"), True).via("a gigabyte written")
@example(a_template("{{ '%999999999d' % 1 }}"), True).via("a gigabyte built by one format")
@example(a_template("{{ '{:>999999999}'.format(1) }}"), True).via("a gigabyte built by str.format")
@example(a_template("{{ 'x' | center(999999999) }}"), True).via("a gigabyte built by a filter")
@example(a_template("{{ 'x' | truncate(-5) }}"), True).via("AssertionError from Jinja's truncate")
@example(a_template("{{ (10 ** 100) ** 100 }}"), True).via("a reason telling the author to call Python")
@example(a_template("{{ 10 ** 40 | money }}"), True).via("the reason was [<class 'decimal.InvalidOperation'>]")
def test_a_template_file_of_any_shape_loads_or_names_its_problems(document: Any, with_generic: bool) -> None:
    texts = (as_yaml(document), GENERIC) if with_generic else (as_yaml(document),)
    templates = load_template_texts(*texts)
    if templates is not None:
        renders_or_refuses(templates, preview_context())


@within(60, 100)
@fuzz(100, deadline_seconds=5)
@given(mutated_yaml(list(SHIPPED_TEMPLATES.values())))
def test_a_mutated_template_pack_loads_or_names_its_problems(text: str) -> None:
    load_template_texts(text, GENERIC)


@within(30, 200)
@fuzz(200)
@given(_garbage_text())
def test_any_text_as_a_template_file_loads_or_names_its_problems(text: str) -> None:
    load_template_texts(text)


def contexts() -> st.SearchStrategy[dict[str, Any]]:
    """The example context with facts, names and amounts of any kind: what a real case could hand a template."""

    def filled(facts: dict[str, Any], amount: Any, name: Any, language: Any) -> dict[str, Any]:
        context = preview_context()
        context["incident"]["data"].update(facts)
        context["remedy"]["amount"] = amount
        context["customer"]["name"] = name
        context["customer"]["language"] = language
        return context

    return st.builds(filled, event_data(), json_values(), json_values(), json_values())


SHIPPED = parse_templates([(path, path.read_text()) for path in sorted(TEMPLATES_DIR.glob("*.yaml"))])


@within(60, 100)
@fuzz(100, deadline_seconds=5)
@given(contexts())
def test_the_shipped_templates_render_any_facts_or_say_which_part_failed(context: dict[str, Any]) -> None:
    renders_or_refuses(SHIPPED, context)


# --- file ingest: CSV, JSONL, Parquet -----------------------------------------------------------------------


class SerialisingSink:
    """Takes a file's valid events as the ledger would, serialised for both databases, and keeps nothing."""

    def prepare(self, events: list[Event]) -> list[LedgerRows]:
        return [ledger_rows(events, dialect=dialect, received_at=T0) for dialect in ("sqlite", "postgresql")]

    def store(self, prepared: list[LedgerRows]) -> Appended:
        return Appended(accepted=len(prepared[0].events))


UNUSED_DB = Database("sqlite://")  # the sink stands in for it
FLAT = ColumnMapping.parse(["subject=customer", "time=at"], constants={"type": "order.placed", "source": "shop"})


def ingest_or_refuse(path: Path, mapping: ColumnMapping) -> FileReport | None:
    """The report of a file, each rejected row named by line and field; or InvalidInput naming the file."""
    try:
        report = ingest_file(UNUSED_DB, path, received_at=T0, mapping=mapping, commit_rows=7, sink=SerialisingSink())
    except InvalidInput as exc:
        assert_clear_input_error(exc)
        return None
    for row in report.rejections:
        assert row.line >= 1
        assert row.field.strip()
        assert row.reason.strip()
    return report


CSV_SAMPLE = (
    "customer,at,order_id,total,note\n"
    "C-1,2026-05-01T10:00:00Z,O-1,42.50,first\n"
    'C-2,2026-05-01T11:00:00+02:00,O-2,7,"a note\nover two lines"\n'
    "C-3,2026-05-01T12:00:00Z,0042,1e5,\n"
)
JSONL_SAMPLE = "\n".join(
    orjson.dumps({**an_envelope("order.placed", order_id=f"O-{n}", total=n * 1.5), "id": f"e-{n}"}).decode()
    for n in range(3)
)
_FILE_PIECES = [
    "\ufeff", "\x00", "\r\n", "\r", '"', '""', ",", ";", "\t", "é", "\udcff", "x" * 200_000, "9" * 30, "-0", "1.",
    "NaN", "null", "{", "}", "[", "]", '{"a": 1}', "[1]", '{"id": 1}', '"time": 1', "2026-05-01", "\\u0000",
    '"\\ud800"', "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "18446744073709551616", "1e400",
]  # fmt: skip


@st.composite
def mutated_text(draw: st.DrawFn, sample: str) -> bytes:
    """A valid file with a few pieces cut, repeated or replaced, then encoded (not always as UTF-8) and maybe
    truncated."""
    text = sample
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(_FILE_PIECES) | st.text(max_size=8))
        action = draw(st.sampled_from(["insert", "replace", "cut"]))
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        else:
            text = text[:at] + text[at + draw(st.integers(0, 40)) :]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1", "utf-8-sig"]))
    raw = text.encode(encoding, errors="surrogateescape" if encoding == "utf-8" else "replace")
    return raw[: draw(st.integers(0, len(raw)))] if draw(st.integers(0, 4)) == 0 else raw


@within(40, 200)
@fuzz(200)
@given(mutated_text(CSV_SAMPLE) | st.binary(max_size=200), st.booleans())
def test_any_csv_file_is_ingested_or_refused_by_line(folder: Path, raw: bytes, mapped: bool) -> None:
    path = folder / "fuzz.csv"
    path.write_bytes(raw)
    ingest_or_refuse(path, FLAT if mapped else ColumnMapping())


@within(40, 200)
@fuzz(200)
@given(mutated_text(JSONL_SAMPLE) | st.binary(max_size=200), st.booleans())
def test_any_jsonl_file_is_ingested_or_refused_by_line(folder: Path, raw: bytes, flat: bool) -> None:
    path = folder / "fuzz.jsonl"
    path.write_bytes(raw)
    ingest_or_refuse(path, FLAT if flat else ColumnMapping())


def _parquet_columns() -> st.SearchStrategy[pl.Series]:
    """A column of one of Parquet's types, with values at the edges and nulls."""
    rows = 3
    column = st.sampled_from(["customer", "at", "id", "type", "data", "total", "x", "time", "subject"])

    def series(name: str, values: list[Any], dtype: Any) -> pl.Series:
        return pl.Series(name, values, dtype=dtype, strict=False)

    kinds: list[tuple[st.SearchStrategy[Any], Any]] = [
        (st.text(max_size=10) | st.sampled_from(_EDGE_TIMES), pl.String),
        (st.integers(-(2**63), 2**63 - 1), pl.Int64),
        (st.integers(0, 2**64 - 1), pl.UInt64),
        (st.integers(-(2**127), 2**127 - 1), pl.Int128),
        (st.floats(), pl.Float64),
        (st.booleans(), pl.Boolean),
        (st.dates(), pl.Date),
        (st.datetimes(), pl.Datetime("us")),
        (st.datetimes(timezones=st.just(UTC)), pl.Datetime("us", "UTC")),
        (st.datetimes(), pl.Datetime("us", "Asia/Kathmandu")),
        (st.timedeltas(min_value=-timedelta(days=10**5), max_value=timedelta(days=10**5)), pl.Duration("us")),
        (st.times(), pl.Time),
        (st.binary(max_size=8), pl.Binary),
        (st.decimals(allow_nan=False, places=2, min_value=-(10**20), max_value=10**20), pl.Decimal(38, 2)),
        (st.lists(st.integers(-5, 5), max_size=3), pl.List(pl.Int64)),
        (st.fixed_dictionaries({"a": st.integers(-5, 5), "b": st.text(max_size=3)}), pl.Struct),
        (st.sampled_from(["a", "b"]), pl.Categorical),
    ]
    return st.one_of(
        st.builds(series, column, st.lists(values | st.none(), min_size=rows, max_size=rows), st.just(dtype))
        for values, dtype in kinds
    )


@within(60, 150)
@fuzz(150, deadline_seconds=5)
@given(st.lists(_parquet_columns(), min_size=1, max_size=5, unique_by=lambda column: column.name), st.booleans())
@example([pl.Series("x", [2**100, None, 1], dtype=pl.Int128)], False).via(
    "TypeError: orjson cannot write a 128-bit integer (naming a row without an id)"
)
def test_any_parquet_file_is_ingested_or_refused_by_row(folder: Path, columns: list[pl.Series], mapped: bool) -> None:
    path = a_new_file(folder, "parquet")
    try:
        pl.DataFrame(columns).write_parquet(path)
    except pl.exceptions.InvalidOperationError:  # a struct of nothing but nulls: Polars cannot write it
        reject()
    ingest_or_refuse(path, FLAT if mapped else ColumnMapping())


def _parquet_sample() -> bytes:
    buffer = io.BytesIO()
    pl.DataFrame({"customer": ["C-1", "C-2"], "at": [T0, T0], "total": [1.5, None]}).write_parquet(buffer)
    return buffer.getvalue()


@st.composite
def mutated_bytes(draw: st.DrawFn, sample: bytes) -> bytes:
    raw = bytearray(sample)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(raw) - 1))
        raw[at] = draw(st.integers(0, 255))
    return bytes(raw[: draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw)


@within(40, 150)
@fuzz(150)
@given(mutated_bytes(_parquet_sample()) | st.binary(max_size=100))
@example(_parquet_sample()[:4] + b"\0" + _parquet_sample()[5:]).via(
    "a footer that reads over a page that does not: Polars' ComputeError"
)
@example(_parquet_sample()[:48] + b"\1" + _parquet_sample()[49:]).via(
    "a page header asking for 2**61 bytes: Polars aborted the process (now read with PyArrow)"
)
def test_a_damaged_parquet_file_is_ingested_or_refused(folder: Path, raw: bytes) -> None:
    path = a_new_file(folder, "parquet")
    path.write_bytes(raw)
    ingest_or_refuse(path, FLAT)


# --- the Olist importer -------------------------------------------------------------------------------------

OLIST_FIXTURE = Path(__file__).parent / "fixtures" / "olist"
_OLIST_CELLS = [
    "", '""', "x", "-1", "1e400", "NaN", "abc", "12,5", "9" * 30, "2017-10-02 10:56:33", "2017-10-02",
    "2017-13-45 99:99:99", "9999-12-31 23:59:59", "0001-01-01 00:00:00", "1969-12-31 23:59:59", "2017-10-02T10:56:33Z",
    "5", "0", "6", "4.5",
    "e481f51cbdc54678b7cc49136f2d6af7", "9ef432eb6251297304e76186b10a928d", "7c396fd4830fd04220f754e42b4e5bff",
]  # fmt: skip


@st.composite
def olist_folders(draw: st.DrawFn) -> dict[str, bytes | None]:
    """The fixture's files, one or two of them damaged: a cell or a header name replaced, a line dropped or
    repeated, the file cut short, re-encoded, replaced by garbage, or missing (None)."""
    files: dict[str, bytes | None] = {name: (OLIST_FIXTURE / name).read_bytes() for name in OLIST_FILES}
    for name in draw(st.lists(st.sampled_from(sorted(OLIST_FILES)), min_size=1, max_size=2)):
        raw = files[name]
        if raw is None:
            continue
        lines = raw.decode(errors="surrogateescape").split("\n")
        action = draw(st.sampled_from(["cell", "cell", "cell", "header", "drop", "repeat", "cut", "encode", "garbage",
                                       "missing", "bom", "empty"]))  # fmt: skip
        at = draw(st.integers(0, len(lines) - 1))
        if action in ("cell", "header"):
            at = 0 if action == "header" else at
            cells = lines[at].split(",")
            cells[draw(st.integers(0, len(cells) - 1))] = draw(st.sampled_from(_OLIST_CELLS) | st.text(max_size=8))
            lines[at] = ",".join(cells)
        elif action == "drop":
            del lines[at]
        elif action == "repeat":
            lines.insert(at, lines[at])
        text = "\n".join(lines)
        if action == "cut":
            files[name] = raw[: draw(st.integers(0, len(raw)))]
        elif action == "encode":
            files[name] = text.encode(draw(st.sampled_from(["utf-16", "latin-1", "cp1252"])), errors="replace")
        elif action == "garbage":
            files[name] = draw(st.binary(max_size=200))
        elif action == "missing":
            files[name] = None
        elif action == "bom":
            files[name] = b"\xef\xbb\xbf" + text.encode(errors="surrogateescape")
        elif action == "empty":
            files[name] = b""
        else:
            files[name] = text.encode(errors="surrogateescape")
    return files


def olist_with(name: str, old: bytes, new: bytes) -> dict[str, bytes | None]:
    """The fixture's files, with `old` replaced by `new` in one of them."""
    files: dict[str, bytes | None] = {file: (OLIST_FIXTURE / file).read_bytes() for file in OLIST_FILES}
    files[name] = (OLIST_FIXTURE / name).read_bytes().replace(old, new)
    return files


@within(60, 150)
@fuzz(150, deadline_seconds=5)
@given(olist_folders())
@example(olist_with("olist_customers_dataset.csv", b'"', b"") | {"olist_customers_dataset.csv": b""}).via(
    "an empty file: Polars' NoDataError"
)
@example(olist_with("olist_order_items_dataset.csv", b",29.99,", b",29.99 BRL,")).via(
    "a price that is no number: Polars' InvalidOperationError"
)
@example(olist_with("olist_orders_dataset.csv", b'"2017-10-18 00:00:00"', b'"9999-12-31 00:00:00"')).via(
    "a promised day at the end of time: OverflowError"
)
@example(olist_with("olist_orders_dataset.csv", b'"2017-10-02 10:56:33"', b'"0001-01-01 00:00:00"')).via(
    "a purchase in year 1: OverflowError converting it to UTC"
)
def test_a_damaged_olist_folder_imports_or_names_the_file_and_column(
    folder: Path, files: dict[str, bytes | None]
) -> None:
    olist = folder / f"olist-{next(_files)}"
    olist.mkdir()
    for name, raw in files.items():
        if raw is not None:
            (olist / name).write_bytes(raw)
    try:
        events = list(olist_events(olist))
    except InvalidInput as exc:
        assert_clear_input_error(exc)
        return
    for event in events:  # what it yields is stored as it is: each is an event, or refused as one naming the field
        outcome = validate_event(event)
        assert isinstance(outcome, Event) or outcome.field
    shutil.rmtree(olist)
