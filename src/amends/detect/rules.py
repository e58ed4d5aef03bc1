"""Rules: declarative detectors in YAML files, checked whole before any of them runs.

A rule file holds `rules:`, a list of rules of five kinds (docs/rules.md has a worked example of each):

- `match`: one event meets a condition (`flight.arrived` with `data.delay_minutes >= 180`);
- `absence`: an expected event did not come for the same key by a deadline;
- `count`: at least N events for the same key within a sliding window;
- `sequence`: an event followed by another for the same key within a window;
- `risk`: the risk model (detect/risk) expects the customer to be let down soon: the calibrated risk at one of
  its moments reaches a threshold, or is among the day's highest within a budget.

The first four read events and run in the evaluators (streaming and batch); a risk rule reads the model's scores
and runs in the risk watch (detect/risk/watch.py), so a `RuleSet` keeps the two apart.

The YAML is read into Pydantic models (the file's shape), then compiled into the frozen values the evaluators
use. Every problem is reported with its file, line and field, and a set of files with any problem loads none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amends.detect.conditions import (
    Condition,
    ConditionProblem,
    FieldPath,
    Predicate,
    compile_condition,
    is_number,
    parse_condition,
    parse_path,
)
from amends.detect.errors import RuleProblem, RuleSetError
from amends.durations import parse_duration
from amends.events import Event
from amends.yamldoc import dotted, parse_yaml, pydantic_reason, read_sources

__all__ = [
    "AbsenceRule",
    "AnyRule",
    "CountRule",
    "Deadline",
    "MatchRule",
    "RiskRule",
    "Rule",
    "RuleCommon",
    "RuleSet",
    "SequenceRule",
    "Severity",
    "event_types",
    "load_rules",
    "parse_rules",
]

SUBJECT = FieldPath("subject", "subject")
CHECK_IN_PLAYBOOK = "check-in"  # what a risk rule's cases follow unless it names another playbook
DEFAULT_WATCH_LATE_FOR = timedelta(days=30)


# --- the compiled rules the evaluators use -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Severity:
    """How bad an incident is, 1 (minor) to 5: fixed, or stepped by a number in the event."""

    fixed: int | None = 2
    by: FieldPath | None = None
    steps: tuple[tuple[float, int], ...] = ()  # ascending thresholds: value >= threshold gives severity
    default: int = 1

    def of(self, event: Event) -> int:
        if self.fixed is not None:
            return self.fixed
        assert self.by is not None
        value = self.by.read(event)
        if not is_number(value):
            return self.default
        chosen = self.default
        for threshold, severity in self.steps:
            if value >= threshold:
                chosen = severity
        return chosen


@dataclass(frozen=True, slots=True)
class Deadline:
    """When an absence rule's expected event is due: a timestamp field of the start event, or its time,
    plus an offset (`data.promised_by + 1d`, `5d`)."""

    text: str
    path: FieldPath | None
    offset: timedelta

    def at(self, event: Event) -> datetime | None:
        """The deadline for this start event; None when its field is missing or not an RFC 3339 time of the years
        1900 to 2999."""
        if self.path is None:
            return event.time + self.offset
        value = self.path.read(event)
        instant = parse_instant(value)
        return None if instant is None else instant.astimezone(UTC) + self.offset


@dataclass(frozen=True, slots=True)
class RuleCommon:
    """What every kind of rule has."""

    id: str
    severity: Severity = field(default_factory=Severity)
    cooldown: timedelta | None = None
    playbook: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True
    file: Path | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Matcher:
    """An event type and an optional condition, compiled."""

    type: str
    condition: Condition | None = None
    predicate: Predicate | None = field(default=None, compare=False, repr=False)

    def matches(self, event: Event) -> bool:
        return event.type == self.type and (self.predicate is None or self.predicate(event) is True)


def matcher(event_type: str, condition: Condition | None) -> Matcher:
    return Matcher(event_type, condition, None if condition is None else compile_condition(condition))


@dataclass(frozen=True, slots=True)
class MatchRule:
    common: RuleCommon
    on: Matcher
    key: FieldPath | None  # None: every matching event is its own incident
    kind: Literal["match"] = "match"


@dataclass(frozen=True, slots=True)
class AbsenceRule:
    common: RuleCommon
    after: Matcher
    expect: Matcher
    key: FieldPath
    deadline: Deadline
    watch_late_for: timedelta = DEFAULT_WATCH_LATE_FOR
    kind: Literal["absence"] = "absence"


@dataclass(frozen=True, slots=True)
class CountRule:
    common: RuleCommon
    on: Matcher
    at_least: int
    within: timedelta
    key: FieldPath = SUBJECT
    kind: Literal["count"] = "count"


@dataclass(frozen=True, slots=True)
class SequenceRule:
    common: RuleCommon
    first: Matcher
    then: Matcher
    within: timedelta
    key: FieldPath = SUBJECT
    kind: Literal["sequence"] = "sequence"


@dataclass(frozen=True, slots=True)
class RiskRule:
    """An incident for a customer whose calibrated risk at one of the model's moments is at least `at_least`,
    and, with `top`, among the day's `top` highest (at most `top` incidents a day)."""

    common: RuleCommon
    at_least: float | None
    top: int | None
    kind: Literal["risk"] = "risk"


Rule = MatchRule | AbsenceRule | CountRule | SequenceRule  # the rules that read events
AnyRule = Rule | RiskRule


def event_types(rule: AnyRule) -> tuple[str, ...]:
    """The event types a rule reads, in the order it reads them (the start before the expected event); none for
    a risk rule, which reads the model's moments."""
    if isinstance(rule, RiskRule):
        return ()
    if isinstance(rule, MatchRule | CountRule):
        return (rule.on.type,)
    if isinstance(rule, AbsenceRule):
        return (rule.after.type, rule.expect.type)
    return (rule.first.type, rule.then.type)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The enabled rules of a set of files, by id, in file order: those that read events (iterating the set gives
    these, for the evaluators) and the risk rules, apart."""

    rules: tuple[Rule, ...] = ()
    disabled: tuple[AnyRule, ...] = ()
    risk: tuple[RiskRule, ...] = ()

    def __post_init__(self) -> None:
        ids = [rule.common.id for rule in (*self.rules, *self.risk, *self.disabled)]
        assert len(ids) == len(set(ids)), "rule ids are unique"

    def __len__(self) -> int:
        return len(self.rules) + len(self.risk)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    @property
    def enabled(self) -> tuple[AnyRule, ...]:
        """Every enabled rule, of both sorts: those that read events, then the risk rules."""
        return (*self.rules, *self.risk)

    @property
    def every(self) -> tuple[AnyRule, ...]:
        """Every rule of the files, enabled or not."""
        return (*self.rules, *self.risk, *self.disabled)

    def get(self, rule_id: str) -> AnyRule | None:
        return next((rule for rule in (*self.rules, *self.risk) if rule.common.id == rule_id), None)


def parse_instant(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with its offset (`2025-03-01T09:00:00+01:00`, `…Z`) in the years 1900 to 2999, else
    None."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# Strict RFC 3339 (the batch evaluator applies the same pattern before DuckDB casts, so both read the same), in
# the years events may have (events.EARLIEST to LATEST): a deadline plus its offset and `watch_late_for` must stay
# a time Python can hold. `9999-12-31…`, a common "never", is no deadline.
RFC3339_PATTERN = r"^(?:19|2\d)\d{2}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$"
_RFC3339 = re.compile(RFC3339_PATTERN)


# --- the file's shape ----------------------------------------------------------------------------------

_ID = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$", description="Unique across all rule files.")]
_TYPE = Annotated[str, Field(min_length=1, max_length=200, description="An event type, e.g. order.placed.")]


class _Steps(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    by: str
    steps: list[tuple[Annotated[float, Field(allow_inf_nan=False)], Annotated[int, Field(ge=1, le=5)]]] = Field(
        min_length=1
    )
    default: Annotated[int, Field(ge=1, le=5)] = 1


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    id: _ID
    description: str | None = None
    enabled: bool = True
    tags: list[str] = []
    severity: Annotated[int, Field(ge=1, le=5)] | _Steps = 2
    cooldown: str | None = None
    playbook: str | None = None


class _MatchSpec(_Spec):
    kind: Literal["match"]
    on: _TYPE
    where: dict[str, Any] | None = None
    key: str | None = None


class _AbsenceSpec(_Spec):
    kind: Literal["absence"]
    after: _TYPE
    expect: _TYPE
    key: str
    deadline: str
    where: dict[str, Any] | None = None
    expect_where: dict[str, Any] | None = None
    watch_late_for: str = "30d"


class _CountSpec(_Spec):
    kind: Literal["count"]
    on: _TYPE
    where: dict[str, Any] | None = None
    at_least: Annotated[int, Field(ge=2, le=10_000)]
    within: str
    key: str = "subject"


class _RiskSpec(_Spec):
    kind: Literal["risk"]
    at_least: Annotated[float, Field(gt=0, le=1, description="A calibrated probability, e.g. 0.4.")] | None = None
    top: Annotated[int, Field(ge=1, le=100_000, description="At most this many incidents a day.")] | None = None


class _SequenceSpec(_Spec):
    kind: Literal["sequence"]
    first: _TYPE
    then: _TYPE
    first_where: dict[str, Any] | None = None
    then_where: dict[str, Any] | None = None
    within: str
    key: str = "subject"


_KINDS: dict[str, type[_Spec]] = {
    "match": _MatchSpec,
    "absence": _AbsenceSpec,
    "count": _CountSpec,
    "sequence": _SequenceSpec,
    "risk": _RiskSpec,
}


class _Problem(Exception):
    def __init__(self, where: tuple[str | int, ...], reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


def _compile(spec: _Spec, where: tuple[str | int, ...], file: Path | None, line: int | None) -> AnyRule:
    def duration(name: str, text: str) -> timedelta:
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise _Problem((*where, name), str(exc)) from None

    def path(name: str, text: str) -> FieldPath:
        try:
            return parse_path(text)
        except ValueError as exc:
            raise _Problem((*where, name), str(exc)) from None

    def condition(name: str, raw: Mapping[str, Any] | None) -> Condition | None:
        if raw is None:
            return None
        try:
            return parse_condition(raw)
        except ConditionProblem as exc:
            raise _Problem((*where, name, *exc.where), exc.reason) from None

    if isinstance(spec.severity, _Steps):
        thresholds = [threshold for threshold, _ in spec.severity.steps]
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise _Problem((*where, "severity", "steps"), "thresholds must go up, each once: [[180, 2], [360, 3]]")
        severity = Severity(None, path("severity", spec.severity.by), tuple(spec.severity.steps), spec.severity.default)
    else:
        severity = Severity(spec.severity)
    common = RuleCommon(
        id=spec.id,
        severity=severity,
        cooldown=None if spec.cooldown is None else duration("cooldown", spec.cooldown),
        playbook=spec.playbook,
        description=spec.description,
        tags=tuple(spec.tags),
        enabled=spec.enabled,
        file=file,
        line=line,
    )
    if isinstance(spec, _MatchSpec):
        key = None if spec.key is None else path("key", spec.key)
        return MatchRule(common, matcher(spec.on, condition("where", spec.where)), key)
    if isinstance(spec, _AbsenceSpec):
        return AbsenceRule(
            common,
            after=matcher(spec.after, condition("where", spec.where)),
            expect=matcher(spec.expect, condition("expect_where", spec.expect_where)),
            key=path("key", spec.key),
            deadline=_deadline(spec.deadline, (*where, "deadline")),
            watch_late_for=duration("watch_late_for", spec.watch_late_for),
        )
    if isinstance(spec, _CountSpec):
        return CountRule(
            common,
            on=matcher(spec.on, condition("where", spec.where)),
            at_least=spec.at_least,
            within=duration("within", spec.within),
            key=path("key", spec.key),
        )
    if isinstance(spec, _RiskSpec):
        if spec.at_least is None and spec.top is None:
            raise _Problem(where, "a risk rule needs at_least (a probability), top (incidents a day), or both")
        if spec.playbook is None:  # nothing is known to have gone wrong yet: a person checks in
            common = replace(common, playbook=CHECK_IN_PLAYBOOK)
        return RiskRule(common, spec.at_least, spec.top)
    assert isinstance(spec, _SequenceSpec)
    return SequenceRule(
        common,
        first=matcher(spec.first, condition("first_where", spec.first_where)),
        then=matcher(spec.then, condition("then_where", spec.then_where)),
        within=duration("within", spec.within),
        key=path("key", spec.key),
    )


def _deadline(text: str, where: tuple[str | int, ...]) -> Deadline:
    """`5d`, `data.promised_by`, `data.promised_by + 1d` or `data.promised_by - 2h`."""
    head, sign, tail = text.partition("+")
    if not sign:
        head, sign, tail = text.partition(" - ")
        sign = "-" if sign else ""
    head, tail = head.strip(), tail.strip()
    try:
        if not sign:
            if head.startswith("data."):
                return Deadline(text, parse_path(head), timedelta())
            return Deadline(text, None, parse_duration(head))
        offset = parse_duration(tail)
        return Deadline(text, parse_path(head), -offset if sign == "-" else offset)
    except ValueError as exc:
        raise _Problem(
            where,
            f"{exc} (a deadline is a duration after the start event, like '5d', or a timestamp field "
            "of it with an optional offset, like 'data.promised_by + 1d')",
        ) from None


# --- loading -------------------------------------------------------------------------------------------


def load_rules(paths: Iterable[Path]) -> RuleSet:
    """Read and check rule files (a directory means its *.yaml and *.yml files, sorted by name).

    Raises RuleSetError listing every problem; on any problem nothing is returned, so a caller keeps
    running the rule set it had.
    """
    sources, problems = read_sources(paths)
    if problems:
        raise RuleSetError(problems)
    return parse_rules(sources)


def parse_rules(sources: Sequence[tuple[Path | None, str]]) -> RuleSet:
    """Check rule files given as (file, text); the same contract as `load_rules`."""
    problems: list[RuleProblem] = []
    rules: list[AnyRule] = []
    seen: dict[str, tuple[Path | None, int | None]] = {}
    for file, text in sources:
        for rule in _parse_file(file, text, problems):
            earlier = seen.get(rule.common.id)
            if earlier is not None:
                where = f"{earlier[0] or 'the same text'}:{earlier[1]}"
                problems.append(
                    RuleProblem(
                        file, rule.common.line, "id", f"duplicate rule id {rule.common.id!r} (first defined at {where})"
                    )
                )
                continue
            seen[rule.common.id] = (file, rule.common.line)
            rules.append(rule)
    if problems:
        raise RuleSetError(problems)
    return RuleSet(
        rules=tuple(rule for rule in rules if rule.common.enabled and not isinstance(rule, RiskRule)),
        disabled=tuple(rule for rule in rules if not rule.common.enabled),
        risk=tuple(rule for rule in rules if rule.common.enabled and isinstance(rule, RiskRule)),
    )


def _parse_file(file: Path | None, text: str, problems: list[RuleProblem]) -> list[AnyRule]:
    parsed = parse_yaml(file, text, problems)
    if parsed is None:
        return []
    document, lines = parsed
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        problems.append(RuleProblem(file, 1, "rules", "a rule file is a mapping with a list under 'rules:'"))
        return []
    extra = sorted(str(key) for key in document if key != "rules")  # YAML keys may be numbers or null too
    if extra:
        problems.append(RuleProblem(file, lines.at((extra[0],)), extra[0], "unknown top-level key; only 'rules'"))
    compiled: list[AnyRule] = []
    for index, raw in enumerate(document["rules"]):
        where: tuple[str | int, ...] = ("rules", index)
        line = lines.at(where)
        try:
            compiled.append(_parse_rule(raw, where, file, line))
        except _Problem as exc:
            problems.append(RuleProblem(file, lines.at(exc.where), dotted(exc.where), exc.reason))
        except ValidationError as exc:
            for loc, reason in _validation_problems(exc):
                at = (*where, *loc)
                problems.append(RuleProblem(file, lines.at(at), dotted(at), reason))
    return compiled


# Pydantic names the member of a union in an error's place (`severity.constrained-int`, `severity._Steps`); an
# author wrote neither.
_SEVERITY_FORMS = ("constrained-int", "_Steps")
_SEVERITY_REASON = "expected a severity from 1 to 5, or {by: a path, steps: [[threshold, severity], ...]}"


def _validation_problems(exc: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    """Each error's place and reason, a wrong severity said once, in the words of the file."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    wrong_severity = False
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if loc[:1] == ("severity",) and loc[1:2] and loc[1] in _SEVERITY_FORMS:
            if len(loc) == 2:  # the value is of neither form
                wrong_severity = True
                continue
            loc = ("severity", *loc[2:])  # inside the steps form: that is what was meant
        found.append((loc, _reason(error)))
    if wrong_severity and not any(loc[:1] == ("severity",) for loc, _ in found):
        found.append((("severity",), _SEVERITY_REASON))
    return found


def _parse_rule(raw: Any, where: tuple[str | int, ...], file: Path | None, line: int | None) -> AnyRule:
    if not isinstance(raw, dict):
        raise _Problem(where, "a rule is a mapping with an id and a kind")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:  # a list or mapping cannot even be looked up
        known = ", ".join(_KINDS)
        reason = "missing kind" if kind is None else f"unknown kind {kind!r}"
        raise _Problem((*where, "kind") if kind is not None else where, f"{reason}; expected one of {known}")
    spec = _KINDS[kind].model_validate(raw)
    return _compile(spec, where, file, line)


def _reason(error: Any) -> str:
    return pydantic_reason(error, what="this kind of rule")
