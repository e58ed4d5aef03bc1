"""The risk model's feature spec: what to know of a customer at a moment, what to predict, and when to ask.

A spec file (YAML, docs/anticipation.md) has three parts:

- `features:` each computed for a (customer, moment) pair from what happened at or before the moment, of a
  generic kind that works for any event vocabulary:
  - `count`: the customer's events of the types named, in the `window` before the moment (all history without),
    and of those only the ones that meet `where` (a condition as the rules write it: `{data.rating: {lte: 2}}`);
  - `since_last`, `since_first`: days since their last (first) event of the types named (`events: any` for any);
  - `sum`, `mean`, `max`, `min`, `last`: a number in those events' data (`value: data.total`), in the window;
  - `until`: hours from the moment to the nearest time still ahead that those events named (`value:
    data.scheduled_departure`: the next flight booked; empty when nothing is ahead);
  - `delay`: how late promises were kept: for each `start` event in the window carrying a promised time
    (`promise: data.promised_by`), the hours from the promise to the first `end` event with the same `key`, or
    to the moment while none has come (0 when kept in time); `aggregate`: max, mean, last or count (how many
    were late);
  - `duration`: the hours from each `start` event to the first `end` event with the same `key` (to the moment
    while none has come), aggregated the same way;
  - `incidents`, `remedies`, `feedback`: the customer's incidents known by the moment (`rules:` to name some),
    remedies granted (`value: count` or `cash`), feedback received (`sentiment:` to name one), in the window;
    `rating`: the mean rating they gave.
- `label:` what the model predicts, from the `within` after the moment: `happened` (a complaint, negative
  feedback, a `low_rating` in amends' own feedback (CSAT 1-2, NPS 0-6, effort 4-5), a rating that arrives as an
  event at or below `rated.at_most`, events of the types named) or `absent` (no event of the types
  named: no purchase within 180 days).
- `moments:` when to score: each event of the types named (a delivery, a landing, a finished job).

Every feature says in `description` what it is in plain words: the reasons shown beside a score are made of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amends.detect.conditions import Condition, ConditionProblem, FieldPath, parse_condition, parse_path
from amends.durations import parse_duration
from amends.yamldoc import FileProblem, FileProblemsError, FileReport, parse_yaml, pydantic_reason, read_sources

__all__ = [
    "SPECS_DIR",
    "Aggregate",
    "Feature",
    "FeatureKind",
    "FeatureSpec",
    "FeatureSpecError",
    "Label",
    "check_spec",
    "load_spec",
    "parse_spec",
    "shipped_spec",
]

SPECS_DIR = Path(__file__).parent / "packs"
_MAX_WINDOW = timedelta(days=3660)


class FeatureSpecError(FileProblemsError):
    """A feature spec with problems; none of it is used."""


class FeatureKind(StrEnum):
    COUNT = "count"
    SINCE_LAST = "since_last"
    SINCE_FIRST = "since_first"
    SUM = "sum"
    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    LAST = "last"
    UNTIL = "until"
    DELAY = "delay"
    DURATION = "duration"
    INCIDENTS = "incidents"
    REMEDIES = "remedies"
    FEEDBACK = "feedback"
    RATING = "rating"

    @property
    def reads_value(self) -> bool:
        return self in (
            FeatureKind.SUM, FeatureKind.MEAN, FeatureKind.MAX, FeatureKind.MIN, FeatureKind.LAST, FeatureKind.UNTIL
        )  # fmt: skip

    @property
    def reads_events(self) -> bool:
        return self in (FeatureKind.COUNT, FeatureKind.SINCE_LAST, FeatureKind.SINCE_FIRST) or self.reads_value

    @property
    def pairs_steps(self) -> bool:
        return self in (FeatureKind.DELAY, FeatureKind.DURATION)


class Aggregate(StrEnum):
    MAX = "max"
    MEAN = "mean"
    LAST = "last"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class Feature:
    """One compiled feature. `events` None means any type (since_first, since_last, count)."""

    id: str
    kind: FeatureKind
    description: str
    window: timedelta | None = None
    events: tuple[str, ...] | None = None
    value: FieldPath | None = None
    where: Condition | None = None  # only the events that meet it (the rules' condition language)
    start: str | None = None
    end: tuple[str, ...] = ()
    key: FieldPath | None = None
    promise: FieldPath | None = None
    aggregate: Aggregate = Aggregate.MAX
    rules: tuple[str, ...] = ()
    sentiment: str | None = None
    cash: bool = False
    file: Path | None = None
    line: int | None = None

    def event_types(self) -> tuple[str, ...]:
        """The event types the feature reads (none for `any`, and none for the tables amends keeps)."""
        if self.kind.pairs_steps:
            return (str(self.start), *self.end)
        return self.events or ()


@dataclass(frozen=True, slots=True)
class Label:
    """What the model predicts for a (customer, moment): whether something happens (or nothing does) within."""

    kind: Literal["happened", "absent"]
    within: timedelta
    complaints: bool = False
    negative_feedback: bool = False
    low_rating: bool = False
    events: tuple[str, ...] = ()
    description: str = ""
    rated_events: tuple[str, ...] = ()  # ratings that arrive as events (feedback.rated), read at `rated_value`
    rated_value: FieldPath | None = None
    rated_at_most: float | None = None


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    features: tuple[Feature, ...]
    label: Label
    moments: tuple[str, ...]
    text: str = ""  # the source, stored with a model so it can be checked against later data

    def event_types(self) -> set[str]:
        """Every event type the spec names."""
        label = {*self.label.events, *self.label.rated_events}
        return {t for f in self.features for t in f.event_types()} | label | set(self.moments)

    def get(self, feature_id: str) -> Feature | None:
        return next((f for f in self.features if f.id == feature_id), None)


# --- the file's shape ----------------------------------------------------------------------------------

_ID = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
_TYPE = Annotated[str, Field(min_length=1, max_length=200)]


class _FeatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: _ID
    kind: FeatureKind
    description: Annotated[str, Field(min_length=3, max_length=200)]
    window: str | None = None
    events: list[_TYPE] | Literal["any"] | None = None
    where: dict[str, Any] | None = None
    value: str | None = None
    start: _TYPE | None = None
    end: list[_TYPE] | None = None
    key: str | None = None
    promise: str | None = None
    aggregate: Aggregate | None = None
    rules: list[str] | None = None
    sentiment: Literal["negative", "neutral", "positive"] | None = None


class _RatedIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    events: list[_TYPE] = Field(min_length=1)
    value: str
    at_most: float


class _LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["happened", "absent"]
    within: str
    complaint: bool = False
    negative_feedback: bool = False
    low_rating: bool = False
    events: list[_TYPE] = []
    rated: _RatedIn | None = None
    description: Annotated[str, Field(max_length=200)] = ""


class _SpecIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    features: list[dict[str, Any]] = Field(min_length=1)
    label: dict[str, Any]
    moments: list[_TYPE] = Field(min_length=1)


class _Problem(Exception):
    def __init__(self, where: tuple[str | int, ...], reason: str) -> None:
        super().__init__(reason)
        self.where, self.reason = where, reason


def shipped_spec(packs: Sequence[str] = ()) -> FeatureSpec:
    """The spec amends ships: the generic one, or that of the one sample business named."""
    name = packs[0] if len(packs) == 1 and (SPECS_DIR / f"{packs[0]}.yaml").is_file() else "generic"
    return load_spec(SPECS_DIR / f"{name}.yaml")


def load_spec(path: Path) -> FeatureSpec:
    """Read and check one spec file; FeatureSpecError lists every problem."""
    sources, problems = read_sources([path])
    if problems:
        raise FeatureSpecError(problems)
    if not sources:
        raise FeatureSpecError([FileProblem(path, None, "", "no YAML file here")])
    return parse_spec(*sources[0])


def parse_spec(file: Path | None, text: str) -> FeatureSpec:
    problems: list[FileProblem] = []
    parsed = parse_yaml(file, text, problems)
    if parsed is None:
        raise FeatureSpecError(problems)
    document, lines = parsed
    report = FileReport(file, lines, problems)
    try:
        shape = _SpecIn.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors():
            report.add(tuple(error["loc"]), pydantic_reason(error, what="a feature spec"))
        raise FeatureSpecError(problems) from None
    features: list[Feature] = []
    for n, raw in enumerate(shape.features):
        where: tuple[str | int, ...] = ("features", n)
        try:
            feature = _feature(_FeatureIn.model_validate(raw), where, file, lines.at(where))
        except ValidationError as exc:
            for error in exc.errors():
                report.add((*where, *error["loc"]), pydantic_reason(error, what="a feature"))
            continue
        except _Problem as problem:
            report.add(problem.where, problem.reason)
            continue
        if any(f.id == feature.id for f in features):
            report.add((*where, "id"), f"{feature.id!r} is defined twice")
            continue
        features.append(feature)
    label = None
    try:
        label = _label(_LabelIn.model_validate(shape.label))
    except ValidationError as exc:
        for error in exc.errors():
            report.add(("label", *error["loc"]), pydantic_reason(error, what="the label"))
    except _Problem as problem:
        report.add(problem.where, problem.reason)
    if problems or label is None:
        raise FeatureSpecError(problems)
    return FeatureSpec(tuple(features), label, tuple(dict.fromkeys(shape.moments)), text)


def _duration(where: tuple[str | int, ...], text: str) -> timedelta:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise _Problem(where, str(exc)) from None
    if not timedelta(0) < value <= _MAX_WINDOW:
        raise _Problem(where, "more than nothing, and at most ten years (3660d)")
    return value


def _data_path(where: tuple[str | int, ...], text: str | None, what: str) -> FieldPath:
    if text is None:
        raise _Problem(where, f"required: {what}")
    try:
        path = parse_path(text)
    except ValueError as exc:
        raise _Problem(where, str(exc)) from None
    if path.root != "data":
        raise _Problem(where, f"a path in the event's data, like data.order_id ({what})")
    return path


def _feature(raw: _FeatureIn, where: tuple[str | int, ...], file: Path | None, line: int | None) -> Feature:
    kind = raw.kind
    allowed = {"id", "kind", "description", "window"}
    if kind.reads_events:
        allowed |= {"events", "where"}
    if kind.reads_value:
        allowed |= {"value"}
    if kind.pairs_steps:
        allowed |= {"start", "end", "key", "aggregate"} | ({"promise"} if kind is FeatureKind.DELAY else set())
    if kind is FeatureKind.INCIDENTS:
        allowed |= {"rules"}
    if kind is FeatureKind.REMEDIES:
        allowed |= {"value"}
    if kind is FeatureKind.FEEDBACK:
        allowed |= {"sentiment"}
    for name in sorted(raw.model_fields_set - allowed):
        raise _Problem((*where, name), f"not a field of a {kind} feature; its fields: {', '.join(sorted(allowed))}")
    window = None if raw.window is None else _duration((*where, "window"), raw.window)
    events: tuple[str, ...] | None = None
    if kind.reads_events:
        if raw.events is None:
            raise _Problem((*where, "events"), "required: a list of event types (e.g. [order.placed]), or any")
        if raw.events == "any":
            if kind.reads_value:
                raise _Problem((*where, "events"), f"a {kind} reads a value of events of the types named, not any")
        else:
            events = tuple(dict.fromkeys(raw.events))
            if not events:
                raise _Problem((*where, "events"), "name at least one event type, or any")
    where_condition = None
    if raw.where is not None:
        try:
            where_condition = parse_condition(raw.where)
        except ConditionProblem as exc:
            raise _Problem((*where, "where", *exc.where), exc.reason) from None
    value = None
    cash = False
    if kind.reads_value:
        hint = (
            "the time to read, e.g. data.scheduled_departure" if kind is FeatureKind.UNTIL
            else "the number to read, e.g. data.total"
        )  # fmt: skip
        value = _data_path((*where, "value"), raw.value, hint)
    elif kind is FeatureKind.REMEDIES:
        if raw.value not in (None, "count", "cash"):
            raise _Problem((*where, "value"), "count (the default) or cash (their cash value)")
        cash = raw.value == "cash"
    start: str | None = None
    end: tuple[str, ...] = ()
    key: FieldPath | None = None
    promise: FieldPath | None = None
    if kind.pairs_steps:
        if raw.start is None or not raw.end:
            raise _Problem((*where, "start" if raw.start is None else "end"), "required: the event types of both steps")
        start, end = raw.start, tuple(dict.fromkeys(raw.end))
        key = _data_path((*where, "key"), raw.key, "what ties the steps together, e.g. data.order_id")
        if kind is FeatureKind.DELAY:
            promise = _data_path((*where, "promise"), raw.promise, "the promised time in the start event")
    return Feature(
        id=raw.id,
        kind=kind,
        description=raw.description.strip(),
        window=window,
        events=events,
        value=value,
        where=where_condition,
        start=start,
        end=end,
        key=key,
        promise=promise,
        aggregate=raw.aggregate or Aggregate.MAX,
        rules=tuple(raw.rules or ()),
        sentiment=raw.sentiment,
        cash=cash,
        file=file,
        line=line,
    )


def _label(raw: _LabelIn) -> Label:
    within = _duration(("label", "within"), raw.within)
    if raw.kind == "absent":
        if not raw.events or raw.complaint or raw.negative_feedback or raw.low_rating or raw.rated is not None:
            raise _Problem(("label", "events"), "an absent label names the event types that did not come, only")
    elif not (raw.events or raw.complaint or raw.negative_feedback or raw.low_rating or raw.rated is not None):
        raise _Problem(
            ("label", "kind"), "name what happens: complaint, negative_feedback, low_rating, rated or events"
        )
    value = None if raw.rated is None else _data_path(("label", "rated", "value"), raw.rated.value, "the rating")
    return Label(
        raw.kind,
        within,
        raw.complaint,
        raw.negative_feedback,
        raw.low_rating,
        tuple(dict.fromkeys(raw.events)),
        raw.description.strip(),
        tuple(dict.fromkeys(raw.rated.events)) if raw.rated is not None else (),
        value,
        raw.rated.at_most if raw.rated is not None else None,
    )


def check_spec(
    spec: FeatureSpec, *, known: Iterable[str], fields: dict[str, set[str]] | None = None, features_only: bool = False
) -> None:
    """FeatureSpecError for each event type the spec names that amends does not know (`known`: stored, or named by
    the rules and settings), and, given `fields` (the data fields seen per event type), each value, key or promise
    no such event has. A misspelt name would otherwise compute zeros and teach the model nothing. `features_only`
    leaves out the label and the moments (scoring reads neither)."""
    known = set(known)
    problems: list[FileProblem] = []
    for feature in spec.features:
        for event_type in feature.event_types():
            if event_type not in known:
                problems.append(
                    FileProblem(
                        feature.file,
                        feature.line,
                        f"features.{feature.id}",
                        f"no event of type {event_type!r} is known; check the spelling",
                    )
                )
        if fields is None:
            continue
        for path, types in (
            (feature.value, feature.events or ()),
            (feature.key, feature.event_types()),
            (feature.promise, (feature.start,) if feature.start else ()),
        ):
            if path is None:
                continue
            for event_type in types:
                seen = fields.get(str(event_type))
                if seen is not None and str(path.steps[0]) not in seen:
                    problems.append(
                        FileProblem(
                            feature.file,
                            feature.line,
                            f"features.{feature.id}",
                            f"no {event_type} event has {path.text}",
                        )
                    )
    others = () if features_only else (*spec.label.events, *spec.label.rated_events, *spec.moments)
    for event_type in others:
        if event_type not in known:
            problems.append(
                FileProblem(
                    None,
                    None,
                    "moments" if event_type in spec.moments else "label",
                    f"no event of type {event_type!r} is known; check the spelling",
                )
            )
    if problems:
        raise FeatureSpecError(problems)
