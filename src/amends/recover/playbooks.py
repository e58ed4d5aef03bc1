"""Playbooks: the ordered steps of recovering a case, each due at an offset from the case's opening or from
its resolution (DESIGN §1 F, §4 "Playbook"; docs/playbooks.md).

Playbooks are YAML files read the way rule files are: every problem is reported with its file, line and
field, and a set of files with any problem loads none. Every set has a `default` playbook, which a case
follows when its rule names no playbook or one the set does not have.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from amends.detect import RuleSet
from amends.durations import parse_duration
from amends.recover.packs import PLAYBOOKS_DIR
from amends.yamldoc import (
    FileProblem,
    FileProblemsError,
    FileReport,
    parse_yaml,
    pydantic_reason,
    read_sources,
)

__all__ = [
    "DEFAULT_PLAYBOOK",
    "Anchor",
    "Playbook",
    "PlaybookSet",
    "PlaybookSetError",
    "Step",
    "StepKind",
    "load_playbooks",
    "parse_playbooks",
    "shipped_playbooks",
    "unknown_playbooks",
]

DEFAULT_PLAYBOOK = "default"


class StepKind(StrEnum):
    """The five steps of service recovery, in the order a playbook runs them."""

    EMPATHISE = "empathise"  # done when the apology is sent
    TAKE_OWNERSHIP = "take_ownership"  # done when the owner acknowledges the case
    LESSEN_INCONVENIENCE = "lessen_inconvenience"  # done when a remedy is granted, or "no remedy" with a reason
    MANAGE_MEMORY = "manage_memory"  # done when the follow-up is recorded with the customer's answer
    EXTEND_EXPERIENCE = "extend_experience"  # done when the card or the invitation is recorded


STEP_ORDER: tuple[StepKind, ...] = tuple(StepKind)

DEFAULT_TITLES: Mapping[StepKind, str] = MappingProxyType(
    {
        StepKind.EMPATHISE: "Apologise, naming what happened",
        StepKind.TAKE_OWNERSHIP: "Take ownership: one owner acknowledges the case",
        StepKind.LESSEN_INCONVENIENCE: "Lessen the inconvenience: grant a remedy, or record why none",
        StepKind.MANAGE_MEMORY: "Follow up: did we make it right?",
        StepKind.EXTEND_EXPERIENCE: "Extend the experience: a thank-you card or an invitation to return",
    }
)


class Anchor(StrEnum):
    """What a step's due offset counts from."""

    OPENED = "opened"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a playbook: what to do, and when it is due."""

    kind: StepKind
    title: str
    due: timedelta  # offset from the anchor, never negative
    anchor: Anchor

    def due_at(self, opened_at: datetime, resolved_at: datetime | None) -> datetime | None:
        """When the step is due for a case; None while a step anchored on the resolution waits for it."""
        if self.anchor is Anchor.OPENED:
            return opened_at + self.due
        return None if resolved_at is None else resolved_at + self.due


@dataclass(frozen=True, slots=True)
class Playbook:
    """The steps of one way of recovering a case, in the canonical order, each at most once."""

    id: str
    description: str
    steps: tuple[Step, ...]
    file: Path | None = None
    line: int | None = None

    def step(self, kind: StepKind) -> Step | None:
        return next((step for step in self.steps if step.kind is kind), None)


@dataclass(frozen=True)
class PlaybookSet:
    """The playbooks of a set of files, by id; always with a `default` one."""

    playbooks: Mapping[str, Playbook]

    def __post_init__(self) -> None:
        assert DEFAULT_PLAYBOOK in self.playbooks, "a playbook set has a default playbook"
        assert all(key == playbook.id for key, playbook in self.playbooks.items()), "keyed by id"
        ordered = MappingProxyType(dict(sorted(self.playbooks.items())))
        object.__setattr__(self, "playbooks", ordered)

    def get(self, playbook_id: str | None) -> Playbook:
        """The playbook called `playbook_id`; the default one when it is None or not in the set."""
        found = None if playbook_id is None else self.playbooks.get(playbook_id)
        return found if found is not None else self.playbooks[DEFAULT_PLAYBOOK]

    def __contains__(self, playbook_id: object) -> bool:
        return playbook_id in self.playbooks

    def __iter__(self) -> Iterator[Playbook]:
        return iter(self.playbooks.values())

    def __len__(self) -> int:
        return len(self.playbooks)


class PlaybookSetError(FileProblemsError):
    """A set of playbook files with one or more problems; nothing of it is loaded."""


# --- the file's shape ----------------------------------------------------------------------------------

_ID = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$", description="Unique across all playbook files.")]
_TITLE = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    step: str
    title: _TITLE | None = None
    due: str


class _PlaybookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: _ID
    description: str = ""
    steps: list[_StepSpec]


_Where = tuple[str | int, ...]
_DUE = re.compile(r"^(?P<duration>.*?)(?:\s+after\s+(?P<anchor>.*?))?$")
_ANCHORS = {"opening": Anchor.OPENED, "resolution": Anchor.RESOLVED}
_DUE_FORMS = (
    "a due is a duration from the case's opening, like '4h', or one after its resolution, like '3d after resolution'"
)


# --- loading -------------------------------------------------------------------------------------------


def load_playbooks(paths: Iterable[Path]) -> PlaybookSet:
    """Read and check playbook files (a directory means its *.yaml and *.yml files, sorted by name).

    Raises PlaybookSetError listing every problem; on any problem nothing is returned, so a caller keeps
    the playbooks it had.
    """
    sources, problems = read_sources(paths)
    if problems:
        raise PlaybookSetError(problems)
    return parse_playbooks(sources)


def parse_playbooks(sources: Sequence[tuple[Path | None, str]]) -> PlaybookSet:
    """Check playbook files given as (file, text); the same contract as `load_playbooks`."""
    problems: list[FileProblem] = []
    playbooks: dict[str, Playbook] = {}
    seen: dict[str, str] = {}  # every id written, even on a playbook with problems: where it is first
    unreadable = False  # a file whose playbooks cannot be known, so it may hold the default one
    for file, text in sources:
        parsed = parse_yaml(file, text, problems)
        if parsed is None:
            unreadable = True
            continue
        document, lines = parsed
        report = FileReport(file, lines, problems)
        if not isinstance(document, dict) or not isinstance(document.get("playbooks"), list):
            report.add(("playbooks",), "a playbook file is a mapping with a list under 'playbooks:'")
            unreadable = True
            continue
        for extra in sorted(set(document) - {"playbooks"}, key=str):
            report.add((str(extra),), "unknown top-level key; only 'playbooks'")
        for index, raw in enumerate(document["playbooks"]):
            where: _Where = ("playbooks", index)
            playbook_id = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(playbook_id, str):
                if playbook_id in seen:
                    reason = f"duplicate playbook id {playbook_id!r} (first defined at {seen[playbook_id]})"
                    report.add((*where, "id"), reason)
                else:
                    seen[playbook_id] = f"{file or 'the same text'}:{lines.at(where)}"
            playbook = _parse_playbook(raw, where, report)
            if playbook is not None and playbook.id not in playbooks:
                playbooks[playbook.id] = playbook
    if DEFAULT_PLAYBOOK not in seen and not unreadable:
        problems.append(
            FileProblem(
                None,
                None,
                "playbooks",
                f"no playbook has the id {DEFAULT_PLAYBOOK!r}; a case whose rule names no playbook, or one "
                "that is not defined, follows it",
            )
        )
    if problems:
        raise PlaybookSetError(problems)
    return PlaybookSet(playbooks)


def shipped_playbooks() -> PlaybookSet:
    """The playbooks amends ships: the default five steps and those the shipped rule packs name."""
    return load_playbooks([PLAYBOOKS_DIR])


def unknown_playbooks(playbooks: PlaybookSet, rules: RuleSet) -> list[FileProblem]:
    """A problem for each rule, enabled or disabled, that names a playbook the set does not have.

    Such a rule still runs, and its cases follow the default playbook; this is for a check before deploying.
    """
    known = ", ".join(playbook.id for playbook in playbooks)
    problems = [
        FileProblem(
            rule.common.file,
            rule.common.line,
            "playbook",
            f"rule {rule.common.id!r} names the playbook {rule.common.playbook!r}, which is not defined, so its "
            f"cases would follow {DEFAULT_PLAYBOOK!r}; the playbooks are {known}",
        )
        for rule in rules.every
        if rule.common.playbook is not None and rule.common.playbook not in playbooks
    ]
    return sorted(problems, key=lambda problem: (str(problem.file or ""), problem.line or 0))


def _parse_playbook(raw: Any, where: _Where, report: FileReport) -> Playbook | None:
    """The playbook of one entry, or None after reporting each of its problems."""
    if not isinstance(raw, dict):
        report.add(where, "a playbook is a mapping with an id and its steps")
        return None
    try:
        spec = _PlaybookSpec.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            at = (*where, *error["loc"])
            report.add(at, _reason(error))
        return None
    before = len(report.problems)
    kinds: list[tuple[int, StepKind]] = []
    steps: list[Step] = []
    for index, step_spec in enumerate(spec.steps):
        at = (*where, "steps", index)
        kind = _parse_kind(step_spec.step, (*at, "step"), report)
        due = _parse_due(step_spec.due, (*at, "due"), report)
        if kind is not None:
            kinds.append((index, kind))
        if kind is not None and due is not None:
            steps.append(Step(kind, step_spec.title or DEFAULT_TITLES[kind], *due))
    _check_steps(kinds, len(spec.steps), where, report)
    if len(report.problems) > before:
        return None
    return Playbook(spec.id, spec.description, tuple(steps), report.file, report.lines.at(where))


def _reason(error: Any) -> str:
    is_step = error["loc"][:1] == ("steps",) and len(error["loc"]) >= 2
    if error["type"] == "model_type" and is_step:
        return "a step is a mapping with its step and when it is due"
    return pydantic_reason(error, what="a step" if is_step else "a playbook")


def _parse_kind(text: str, where: _Where, report: FileReport) -> StepKind | None:
    kind = next((kind for kind in StepKind if kind.value == text), None)
    if kind is None:
        close = difflib.get_close_matches(text, [kind.value for kind in StepKind], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        steps = ", ".join(kind.value for kind in StepKind)
        report.add(where, f"unknown step {text!r}{hint}; the steps are {steps}")
    return kind


def _parse_due(text: str, where: _Where, report: FileReport) -> tuple[timedelta, Anchor] | None:
    """`4h` (from the opening), `4h after opening` or `3d after resolution`."""
    match = _DUE.fullmatch(text.strip())
    assert match is not None  # the pattern matches any text
    duration, phrase = match["duration"].strip(), match["anchor"]
    anchor = Anchor.OPENED
    if phrase is not None:
        if phrase.strip() not in _ANCHORS:
            report.add(where, f"a step is due after 'opening' or 'resolution', not {phrase.strip()!r}; {_DUE_FORMS}")
            return None
        anchor = _ANCHORS[phrase.strip()]
    if duration.startswith("-"):
        since = "opened" if anchor is Anchor.OPENED else "resolved"
        report.add(where, f"a step cannot be due before the case is {since}, got {text!r}")
        return None
    try:
        # Zero is allowed: a step due at the moment the case opens (or is resolved).
        return parse_duration(duration, zero=True), anchor
    except ValueError as exc:
        report.add(where, f"{exc}; {_DUE_FORMS}")
        return None


def _check_steps(kinds: list[tuple[int, StepKind]], written: int, where: _Where, report: FileReport) -> None:
    """Each step once, in the canonical order, and always one owner. `written` counts the steps in the file,
    `kinds` those whose kind is known."""
    if not written:
        report.add((*where, "steps"), "a playbook needs at least one step, and take_ownership is always one")
        return
    first_at: dict[StepKind, int] = {}
    latest: StepKind | None = None
    for index, kind in kinds:
        at = (*where, "steps", index, "step")
        if kind in first_at:
            report.add(at, f"step {kind.value!r} is already steps[{first_at[kind]}]; each step comes once")
            continue
        first_at[kind] = index
        if latest is not None and STEP_ORDER.index(kind) < STEP_ORDER.index(latest):
            order = ", ".join(step.value for step in STEP_ORDER)
            report.add(at, f"step {kind.value!r} comes after {latest.value!r}; the steps run in the order {order}")
            continue
        latest = kind
    # A misspelt step was reported already and may well be the missing take_ownership.
    if len(kinds) == written and StepKind.TAKE_OWNERSHIP not in first_at:
        report.add((*where, "steps"), "a playbook must have the step take_ownership: a case always has an owner")
