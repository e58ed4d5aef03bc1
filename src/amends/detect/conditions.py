"""Conditions of the rule language: dotted paths into an event, compared without `eval`.

    where:
      data.delay_minutes: {gte: 180}        # an operator
      data.cabin: business                  # a plain value: equality
      data.channel: [email, phone]          # a list: one of them
      any: [{data.damaged: true}, {data.reason: {contains: broken}}]
      not: {source: https://test.example.com}

Operators: eq ne gt gte lt lte in nin exists contains; `all` / `any` / `not` combine conditions (several
keys in one mapping all have to hold). Paths start at an envelope field (`type`, `subject`, `source`, `id`)
or at `data`; a number step reads a list item (`data.items.0.sku`).

A comparison is true, false or unknown, as in SQL. It is unknown when the field is missing or JSON null, or
(for `gt`/`gte`/`lt`/`lte`/`contains`) holds a value of another type than the rule's (a number compared with
a number, text with text). `all`, `any` and `not` follow three-valued logic, and a rule matches only when its
condition is true: an event that lacks a field a rule reads never matches it. Equality never crosses types:
`1` equals `1.0`, but not `"1"` and not `true`.

Each condition compiles twice, from the same parsed value: to a Python predicate for the streaming evaluator
and to a DuckDB expression for the batch evaluator (`detect/batch.py`); a property test holds them equal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any, Final, Literal

from amends.events import Event

__all__ = [
    "AllOf",
    "AnyOf",
    "Compare",
    "Condition",
    "ConditionProblem",
    "Exists",
    "FieldPath",
    "Not",
    "Scalar",
    "compile_condition",
    "parse_condition",
    "parse_path",
]

Scalar = str | int | float | bool
Truth = bool | None  # None: unknown

ENVELOPE_FIELDS: Final = ("type", "subject", "source", "id")
COMPARISONS: Final = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "exists", "contains")
MAX_DEPTH: Final = 20  # all / any / not inside each other
_FLOAT_MAX: Final = sys.float_info.max
_STEP = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_-]{0,99}|\d{1,6})$")
_MISSING: Final = object()


class ConditionProblem(ValueError):
    """A condition that cannot be compiled: `where` is the path inside the condition, `reason` why."""

    def __init__(self, where: tuple[str | int, ...], reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A dotted path into an event: an envelope field, or `data` followed by keys and list indexes."""

    text: str
    root: str
    steps: tuple[str | int, ...] = ()
    # `read(event)`: the value at this path, or None when it is missing (JSON null reads as missing too).
    read: Callable[[Event], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The reader is chosen once: most paths are an envelope field or one key of `data`.
        reader: Callable[[Event], Any]
        if self.root != "data":
            reader = attrgetter(self.root)
        elif len(self.steps) == 1 and isinstance(self.steps[0], str):
            reader = partial(_read_key, self.steps[0])
        else:
            reader = partial(_read_steps, self.steps)
        object.__setattr__(self, "read", reader)

    def json_path(self) -> str:
        """The same path in DuckDB's JSON path syntax (for `data` paths): `$."a"."b"[0]`."""
        parts = ["$"]
        for step in self.steps:
            parts.append(f"[{step}]" if isinstance(step, int) else f'."{step}"')
        return "".join(parts)


def _read_key(key: str, event: Event) -> Any:
    return event.data.get(key)


def _read_steps(steps: tuple[str | int, ...], event: Event) -> Any:
    value: Any = event.data
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return None
        elif not isinstance(value, dict):
            return None
        else:
            value = value.get(step, _MISSING)
            if value is _MISSING:
                return None
            continue
        value = value[step]
    return value


def parse_path(text: Any) -> FieldPath:
    """`data.order_id` → FieldPath; raises ValueError with the reason."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a dotted path such as 'data.order_id', got {text!r}")
    root, *rest = text.split(".")
    if root in ENVELOPE_FIELDS:
        if rest:
            raise ValueError(f"{root!r} is text; it has no fields (path {text!r})")
        return FieldPath(text, root)
    if root != "data":
        fields = ", ".join(ENVELOPE_FIELDS)
        raise ValueError(f"a path starts at data or at an envelope field ({fields}), got {text!r}")
    if not rest:
        raise ValueError("name a field inside data, e.g. 'data.order_id'")
    steps: list[str | int] = []
    for step in rest:
        if not _STEP.fullmatch(step):
            raise ValueError(f"{step!r} in {text!r} is not a field name (letters, digits, _ or -) or a list index")
        steps.append(int(step) if step.isdigit() else step)
    return FieldPath(text, "data", tuple(steps))


@dataclass(frozen=True, slots=True)
class Compare:
    path: FieldPath
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains"]
    operand: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Exists:
    path: FieldPath
    expected: bool


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    part: Condition


Condition = Compare | Exists | AllOf | AnyOf | Not


# --- parsing --------------------------------------------------------------------------------------------


def parse_condition(raw: Any, where: tuple[str | int, ...] = ()) -> Condition:
    """Parse the YAML form of a condition; raises ConditionProblem naming the place inside it."""
    return _parse(raw, where, 0)


def _parse(raw: Any, where: tuple[str | int, ...], depth: int) -> Condition:
    if depth > MAX_DEPTH:  # parsing, compiling and evaluating all recurse: a bound here keeps them off the limit
        raise ConditionProblem(where, f"all, any and not nested deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, Mapping) or not raw:
        raise ConditionProblem(where, f"expected a mapping of paths or all/any/not, got {_kind(raw)}")
    parts: list[Condition] = []
    for key, value in raw.items():
        at = (*where, key)
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise ConditionProblem(at, f"expected a non-empty list of conditions, got {_kind(value)}")
            inner = tuple(_parse(item, (*at, i), depth + 1) for i, item in enumerate(value))
            parts.append(AllOf(inner) if key == "all" else AnyOf(inner))
        elif key == "not":
            parts.append(Not(_parse(value, at, depth + 1)))
        else:
            try:
                path = parse_path(key)
            except ValueError as exc:
                raise ConditionProblem(at, str(exc)) from None
            parts.extend(_comparisons(path, value, at))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _comparisons(path: FieldPath, value: Any, at: tuple[str | int, ...]) -> list[Condition]:
    if isinstance(value, list):
        return [Compare(path, "in", _scalars(value, at))]
    if not isinstance(value, Mapping):
        return [Compare(path, "eq", _scalar(value, at))]
    if not value:
        raise ConditionProblem(at, "expected at least one operator, e.g. {gte: 180}")
    found: list[Condition] = []
    for op, operand in value.items():
        here = (*at, op)
        if op not in COMPARISONS:
            raise ConditionProblem(here, f"unknown operator {op!r}; expected one of {', '.join(COMPARISONS)}")
        if op == "exists":
            if not isinstance(operand, bool):
                raise ConditionProblem(here, f"expected true or false, got {_kind(operand)}")
            found.append(Exists(path, operand))
        elif op in ("in", "nin"):
            if not isinstance(operand, list) or not operand:
                raise ConditionProblem(here, f"expected a non-empty list of values, got {_kind(operand)}")
            found.append(Compare(path, op, _scalars(operand, here)))
        else:
            scalar = _scalar(operand, here)
            if op in ("gt", "gte", "lt", "lte", "contains") and isinstance(scalar, bool):
                raise ConditionProblem(here, f"{op} compares numbers or text, not true/false")
            if op == "contains" and not isinstance(scalar, str | int | float):
                raise ConditionProblem(here, "contains takes a value to look for")
            found.append(Compare(path, op, scalar))
    return found


def _scalar(value: Any, at: tuple[str | int, ...]) -> Scalar:
    if isinstance(value, int) and not isinstance(value, bool) and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
        # the batch evaluator compares numbers as doubles
        raise ConditionProblem(at, f"a number beyond ±{_FLOAT_MAX:.3e} cannot be compared")
    if isinstance(value, bool | str | int) or (isinstance(value, float) and value == value):
        return value
    raise ConditionProblem(at, f"expected a number, text or true/false, got {_kind(value)}")


def _scalars(values: Sequence[Any], at: tuple[str | int, ...]) -> tuple[Scalar, ...]:
    return tuple(_scalar(value, (*at, i)) for i, value in enumerate(values))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


# --- the Python predicate --------------------------------------------------------------------------------

Predicate = Callable[[Event], Truth]


def compile_condition(condition: Condition) -> Predicate:
    """A function of an event giving True, False or None (unknown), built once per rule."""
    if isinstance(condition, Exists):
        read, expected = condition.path.read, condition.expected
        return lambda event: (read(event) is not None) is expected
    if isinstance(condition, Compare):
        return _compile_compare(condition)
    if isinstance(condition, Not):
        inner = compile_condition(condition.part)

        def negated(event: Event) -> Truth:
            truth = inner(event)
            return None if truth is None else not truth

        return negated
    parts = tuple(compile_condition(part) for part in condition.parts)
    if isinstance(condition, AllOf):

        def all_of(event: Event) -> Truth:
            unknown = False
            for part in parts:
                truth = part(event)
                if truth is False:
                    return False
                unknown = unknown or truth is None
            return None if unknown else True

        return all_of

    def any_of(event: Event) -> Truth:
        unknown = False
        for part in parts:
            truth = part(event)
            if truth is True:
                return True
            unknown = unknown or truth is None
        return None if unknown else False

    return any_of


def is_number(value: Any) -> bool:
    """A JSON number: int or float, never true/false."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_value(value: Any, operand: Scalar) -> bool:
    """JSON equality that never crosses types: 1 == 1.0, but "1" != 1 and true != 1."""
    if isinstance(operand, bool):
        return isinstance(value, bool) and value is operand
    if is_number(operand):
        return is_number(value) and value == operand
    return isinstance(value, str) and value == operand


def _compile_compare(condition: Compare) -> Predicate:
    read, op, operand = condition.path.read, condition.op, condition.operand
    if op in ("in", "nin"):
        options = operand if isinstance(operand, tuple) else (operand,)
        wanted = op == "in"

        def member(event: Event) -> Truth:
            value = read(event)
            if value is None:
                return None
            return any(same_value(value, option) for option in options) is wanted

        return member
    assert not isinstance(operand, tuple)
    single: Scalar = operand
    if op in ("eq", "ne"):
        equal = op == "eq"

        def equality(event: Event) -> Truth:
            value = read(event)
            return None if value is None else same_value(value, single) is equal

        return equality
    if op == "contains":

        def contains(event: Event) -> Truth:
            value = read(event)
            if isinstance(value, str) and isinstance(single, str):
                return single in value
            if isinstance(value, list):
                return any(same_value(item, single) for item in value)
            return None

        return contains
    number = is_number(single)
    compare = _ORDER[op]

    def ordered(event: Event) -> Truth:
        value = read(event)
        if number:
            return compare(value, single) if is_number(value) else None
        return compare(value, single) if isinstance(value, str) else None

    return ordered


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: bool(a > b),
    "gte": lambda a, b: bool(a >= b),
    "lt": lambda a, b: bool(a < b),
    "lte": lambda a, b: bool(a <= b),
}
