"""Outcomes: what the holdout experiment measures for each customer after an incident, defined in YAML over what
the customer did next (docs/insights.md#outcomes).

An outcome reads rows of one or more sources for the same customer in a window after the incident's `failure_at`
(and, for variance reduction, the same window before it):

- `events`: the customer's events of the types named (`events: [order.placed]`), or of any type (`events: any`);
  `value:` names a number in the event's data (`data.total`) for sums and means;
- `complaints`: the complaints amends recorded;
- `feedback`: the feedback amends received (not spam), optionally of one `sentiment`; `value: rating`.

Its `kind` says what is measured: `happened` (the share of customers with a row in the window), `absent` (the
share with none: went silent), `count` (rows per customer), `sum` (the value summed per customer: spend), `mean`
(the mean value of those with one: rating). `better` says which way is good.

    outcomes:
      - id: bought-again
        title: Bought again within 90 days
        kind: happened
        from: events
        events: [order.placed]
        within: 90d
        better: higher
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from amends.config import Settings
from amends.durations import parse_duration
from amends.store import UnitOfWork, tables
from amends.yamldoc import FileProblem, FileProblemsError, FileReport, parse_yaml, read_sources

__all__ = [
    "OUTCOMES_DIR",
    "Kind",
    "Outcome",
    "OutcomeSetError",
    "Source",
    "check_event_types",
    "load_outcomes",
    "outcomes_from_settings",
    "parse_outcomes",
    "shipped_outcomes",
    "spend_outcome",
]

OUTCOMES_DIR = Path(__file__).parent / "outcomes"
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_VALUE = re.compile(r"^data(\.[A-Za-z0-9_-]+)+$")
_E = TypeVar("_E", bound=StrEnum)
_FIELDS = {"id", "title", "kind", "from", "events", "value", "sentiment", "within", "better"}


class Kind(StrEnum):
    HAPPENED = "happened"
    ABSENT = "absent"
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"

    @property
    def is_share(self) -> bool:
        """Whether the outcome is a yes or no per customer (a proportion)."""
        return self in (Kind.HAPPENED, Kind.ABSENT)


class Source(StrEnum):
    EVENTS = "events"
    COMPLAINTS = "complaints"
    FEEDBACK = "feedback"


class OutcomeSetError(FileProblemsError):
    """Outcome definitions with problems; none of them is used."""


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    title: str
    kind: Kind
    sources: tuple[Source, ...]
    events: tuple[str, ...] | None  # None: any type
    value: tuple[str, ...] | None  # the path in an event's data, or ("rating",) for feedback
    sentiment: str | None
    within: timedelta
    better: str  # higher | lower
    file: Path | None = None
    line: int | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"


def outcomes_from_settings(settings: Settings) -> tuple[Outcome, ...]:
    """The outcomes the settings name: their file, else the shipped ones for the rule packs in use."""
    if settings.outcomes_file is not None:
        return load_outcomes([settings.outcomes_file])
    return shipped_outcomes(settings.rule_packs)


def spend_outcome(outcomes: Sequence[Outcome]) -> str | None:
    """The outcome the return on recovery sets remedies against: the first sum (spend), if any."""
    return next((outcome.id for outcome in outcomes if outcome.kind is Kind.SUM), None)


def shipped_outcomes(packs: Sequence[str] = ()) -> tuple[Outcome, ...]:
    """The outcomes amends ships: the generic ones, and those of the sample businesses' packs named."""
    files = [OUTCOMES_DIR / "generic.yaml", *(OUTCOMES_DIR / f"{pack}.yaml" for pack in packs)]
    return load_outcomes([file for file in files if file.is_file()])


def load_outcomes(paths: Iterable[Path]) -> tuple[Outcome, ...]:
    """Read and check outcome files (a directory: its YAML files by name); OutcomeSetError lists every problem."""
    sources, problems = read_sources(paths)
    if problems:
        raise OutcomeSetError(problems)
    return parse_outcomes(sources)


def parse_outcomes(sources: Sequence[tuple[Path | None, str]]) -> tuple[Outcome, ...]:
    problems: list[FileProblem] = []
    outcomes: dict[str, Outcome] = {}
    for file, text in sources:
        parsed = parse_yaml(file, text, problems)
        if parsed is None:
            continue
        document, lines = parsed
        report = FileReport(file, lines, problems)
        if not isinstance(document, dict) or not isinstance(document.get("outcomes"), list):
            report.add([], "expected a mapping with a list under `outcomes:`")
            continue
        for n, raw in enumerate(document["outcomes"]):
            outcome = _parse(raw, ["outcomes", n], report)
            if outcome is None:
                continue
            if outcome.id in outcomes:
                report.add(["outcomes", n, "id"], f"{outcome.id!r} is defined twice")
                continue
            outcomes[outcome.id] = outcome
    if problems:
        raise OutcomeSetError(problems)
    if not outcomes:
        raise OutcomeSetError([FileProblem(None, None, "outcomes", "no outcome is defined")])
    return tuple(outcomes.values())


def check_event_types(uow: UnitOfWork, outcomes: Sequence[Outcome], *, known: Iterable[str] = ()) -> None:
    """OutcomeSetError for each outcome naming an event type amends does not know: none stored, and none of `known`
    (the types the rules and settings name). A misspelt type would otherwise measure nothing, and report that
    nothing happened as a fact."""
    wanted = {kind for outcome in outcomes for kind in outcome.events or ()} - set(known)
    if not wanted:
        return
    stored = tables.events.c.type
    known = {*known, *uow.execute(sa.select(stored).where(stored.in_(sorted(wanted))).distinct()).scalars()}
    problems = [
        FileProblem(
            outcome.file,
            outcome.line,
            f"outcomes.{outcome.id}.events",
            f"no event of type {kind!r} has been received; check the spelling (types are like order.placed)",
        )
        for outcome in outcomes
        for kind in outcome.events or ()
        if kind not in known
    ]
    if problems:
        raise OutcomeSetError(problems)


def _parse(raw: Any, where: list[str | int], report: FileReport) -> Outcome | None:
    before = len(report.problems)
    if not isinstance(raw, dict):
        report.add(where, "expected a mapping (id, title, kind, from, within, better)")
        return None
    for name in sorted(set(raw) - _FIELDS):
        report.add([*where, name], f"unknown field; the fields are {', '.join(sorted(_FIELDS))}")
    outcome_id = raw.get("id")
    if not isinstance(outcome_id, str) or not _ID.match(outcome_id):
        report.add([*where, "id"], "required: lower-case letters, digits, - and _ (e.g. bought-again)")
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        report.add([*where, "title"], "required: a short sentence people read (at most 200 characters)")
    kind = _choice(raw.get("kind"), Kind, [*where, "kind"], report)
    from_ = raw.get("from", "events")
    names = from_ if isinstance(from_, list) else [from_]
    sources = [_choice(name, Source, [*where, "from"], report) for name in names]
    if not names:
        report.add([*where, "from"], "name at least one source: events, complaints or feedback")
    events = _events(raw.get("events"), Source.EVENTS in sources, [*where, "events"], report)
    value = _value(raw.get("value"), kind, sources, [*where, "value"], report)
    sentiment = raw.get("sentiment")
    if sentiment is not None and (
        sentiment not in ("negative", "neutral", "positive") or Source.FEEDBACK not in sources
    ):
        report.add([*where, "sentiment"], "negative, neutral or positive, for an outcome read from feedback")
    within = None
    try:
        within = parse_duration(str(raw.get("within", "")))
        if within > timedelta(days=730):
            report.add([*where, "within"], "at most two years (730d)")
    except ValueError as exc:
        report.add([*where, "within"], f"required: {exc}")
    better = raw.get("better")
    if better not in ("higher", "lower"):
        report.add([*where, "better"], "required: higher or lower (which way is good for the customer and for us)")
    if len(report.problems) > before or kind is None or within is None:
        return None
    return Outcome(
        str(outcome_id),
        str(title).strip(),
        kind,
        tuple(source for source in sources if source is not None),
        events,
        value,
        sentiment,
        within,
        str(better),
        report.file,
        report.lines.at(where),
    )


def _choice(value: Any, kind: type[_E], where: list[str | int], report: FileReport) -> _E | None:
    try:
        return kind(value)
    except ValueError:
        report.add(where, f"one of {', '.join(member.value for member in kind)}, got {value!r}")
        return None


def _events(value: Any, wanted: bool, where: list[str | int], report: FileReport) -> tuple[str, ...] | None:
    if not wanted:
        if value is not None:
            report.add(where, "only for an outcome read from events")
        return None
    if value == "any":
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        report.add(where, "required for events: a list of event types (e.g. [order.placed]), or any")
        return None
    return tuple(dict.fromkeys(v.strip() for v in value))


def _value(
    value: Any, kind: Kind | None, sources: list[Source | None], where: list[str | int], report: FileReport
) -> tuple[str, ...] | None:
    needs = kind in (Kind.SUM, Kind.MEAN)
    if value is None:
        if needs:
            report.add(where, f"a {kind} needs a value: data.<field> for events, rating for feedback")
        return None
    if not needs:
        report.add(where, "only a sum or a mean reads a value")
        return None
    if len(sources) != 1:
        report.add(where, "a value is read from one source only")
        return None
    if sources[0] is Source.FEEDBACK:
        if value != "rating":
            report.add(where, "feedback has one value: rating")
            return None
        return ("rating",)
    if sources[0] is Source.EVENTS and isinstance(value, str) and _VALUE.match(value):
        return tuple(value.split(".")[1:])
    report.add(where, "a path in the event's data, like data.total")
    return None
