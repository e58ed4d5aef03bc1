"""Playbooks: the shipped ones cover the shipped rules, every check is reported with file, line and field,
a set with any problem loads nothing, and steps fall due from the case's opening or its resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from amends.detect import load_rules, parse_rules
from amends.detect.packs import PACKS, pack_path, pack_paths
from amends.recover.packs import PLAYBOOKS_DIR
from amends.recover.playbooks import (
    DEFAULT_PLAYBOOK,
    Anchor,
    PlaybookSetError,
    Step,
    StepKind,
    load_playbooks,
    parse_playbooks,
    shipped_playbooks,
    unknown_playbooks,
)
from amends.yamldoc import FileProblem

DEFAULT_FILE = Path("playbooks/default.yaml")
SHOP_FILE = Path("playbooks/shop.yaml")

DEFAULT_TEXT = """\
playbooks:
  - id: default
    description: The five steps.
    steps:
      - step: empathise
        title: Apologise, naming what happened
        due: 4h
      - step: take_ownership
        due: 2h
      - step: lessen_inconvenience
        due: 1d
      - step: manage_memory
        due: 3d after resolution
      - step: extend_experience
        due: 7d after resolution
"""


def playbook_file(*steps: str, playbook_id: str = "late-delivery", extra: str = "") -> str:
    """A file with one playbook; each step is `kind due` (the due may hold spaces)."""
    lines = ["playbooks:", f"  - id: {playbook_id}", "    steps:"]
    for step in steps:
        kind, _, due = step.partition(" ")
        lines += [f"      - step: {kind}", f"        due: {due}"]
    return "\n".join(lines) + "\n" + extra


def problems(text: str) -> list[FileProblem]:
    """The problems of `text` read as shop.yaml beside a good default.yaml."""
    with pytest.raises(PlaybookSetError) as caught:
        parse_playbooks([(DEFAULT_FILE, DEFAULT_TEXT), (SHOP_FILE, text)])
    return caught.value.problems


# The shipped playbooks ---------------------------------------------------------------------------------


def test_the_shipped_playbooks_cover_every_playbook_the_shipped_rule_packs_name() -> None:
    playbooks = shipped_playbooks()
    rules = load_rules(pack_paths(PACKS))

    assert unknown_playbooks(playbooks, rules) == []
    named = {rule.common.playbook for rule in rules}
    assert named <= {playbook.id for playbook in playbooks}
    assert len(named) >= 16


@pytest.mark.parametrize("name", PACKS)
def test_each_business_needs_only_its_own_file_and_the_default_one(name: str) -> None:
    playbooks = load_playbooks([PLAYBOOKS_DIR / "default.yaml", PLAYBOOKS_DIR / f"{name}.yaml"])

    assert unknown_playbooks(playbooks, load_rules([pack_path(name)])) == []


def test_the_shipped_default_is_the_five_steps_in_order_and_every_playbook_has_an_owner() -> None:
    playbooks = shipped_playbooks()

    default = playbooks.get(None)
    assert default.id == DEFAULT_PLAYBOOK
    assert default.file == PLAYBOOKS_DIR / "default.yaml"
    assert [step.kind for step in default.steps] == list(StepKind)
    assert [step.anchor for step in default.steps] == [Anchor.OPENED] * 3 + [Anchor.RESOLVED] * 2
    for playbook in playbooks:
        assert playbook.description
        assert playbook.step(StepKind.TAKE_OWNERSHIP) is not None, playbook.id


def test_a_short_playbook_leaves_steps_out_and_a_rework_gets_a_loaner_car() -> None:
    playbooks = shipped_playbooks()

    late = playbooks.get("late-delivery")
    assert [step.kind for step in late.steps] == [
        StepKind.EMPATHISE,
        StepKind.TAKE_OWNERSHIP,
        StepKind.LESSEN_INCONVENIENCE,
    ]
    assert late.step(StepKind.MANAGE_MEMORY) is None
    rework = playbooks.get("rework")
    assert len(rework.steps) == 5
    remedy = rework.step(StepKind.LESSEN_INCONVENIENCE)
    assert remedy is not None
    assert "loaner" in remedy.title


# Reading a file ----------------------------------------------------------------------------------------


def test_a_file_reads_into_steps_with_their_titles_dues_and_anchors() -> None:
    text = (
        DEFAULT_TEXT
        + """\
  - id: lost-bag
    description: A bag is lost.
    steps:
      - step: take_ownership
        due: 30m after opening
      - step: lessen_inconvenience
        title: Pay the claim
        due: 0m after resolution
"""
    )
    playbooks = parse_playbooks([(DEFAULT_FILE, text)])

    assert len(playbooks) == 2
    assert [playbook.id for playbook in playbooks] == ["default", "lost-bag"]
    assert "lost-bag" in playbooks
    assert "nope" not in playbooks
    lost = playbooks.get("lost-bag")
    assert (lost.file, lost.line, lost.description) == (DEFAULT_FILE, 16, "A bag is lost.")
    assert lost.steps == (
        Step(
            StepKind.TAKE_OWNERSHIP,
            "Take ownership: one owner acknowledges the case",
            timedelta(minutes=30),
            Anchor.OPENED,
        ),
        Step(StepKind.LESSEN_INCONVENIENCE, "Pay the claim", timedelta(0), Anchor.RESOLVED),
    )
    default = playbooks.get("default")
    assert default.steps[0].title == "Apologise, naming what happened"
    manage = default.step(StepKind.MANAGE_MEMORY)
    assert manage is not None
    assert (manage.due, manage.anchor) == (timedelta(days=3), Anchor.RESOLVED)


def test_none_or_an_unknown_name_gets_the_default_playbook() -> None:
    playbooks = shipped_playbooks()

    assert playbooks.get(None).id == "default"
    assert playbooks.get("nope").id == "default"
    assert playbooks.get("lost-bag").id == "lost-bag"


def test_a_step_falls_due_from_the_opening_or_once_the_case_is_resolved() -> None:
    opened = datetime(2025, 3, 1, 9, tzinfo=UTC)
    resolved = datetime(2025, 3, 4, 17, tzinfo=UTC)
    apology = Step(StepKind.EMPATHISE, "Apologise", timedelta(hours=4), Anchor.OPENED)
    follow_up = Step(StepKind.MANAGE_MEMORY, "Follow up", timedelta(days=3), Anchor.RESOLVED)

    assert apology.due_at(opened, None) == datetime(2025, 3, 1, 13, tzinfo=UTC)
    assert apology.due_at(opened, resolved) == datetime(2025, 3, 1, 13, tzinfo=UTC)
    assert follow_up.due_at(opened, None) is None
    assert follow_up.due_at(opened, resolved) == datetime(2025, 3, 7, 17, tzinfo=UTC)


# Checks ------------------------------------------------------------------------------------------------

LONG = "x" * 201


@pytest.mark.parametrize(
    ("text", "line", "field", "expected"),
    [
        pytest.param(
            playbook_file("take_ownership 1h", extra="owner: lead\n"),
            6,
            "owner",
            "unknown top-level key; only 'playbooks'",
            id="top-level-key",
        ),
        pytest.param(
            "playbooks:\n  id: late-delivery\n",
            2,
            "playbooks",
            "a playbook file is a mapping with a list under 'playbooks:'",
            id="not-a-list",
        ),
        pytest.param(
            playbook_file("take_ownership 1h", playbook_id="Late_Delivery"),
            2,
            "playbooks[0].id",
            "must be lower-case letters, digits",
            id="id-pattern",
        ),
        pytest.param(
            playbook_file("take_ownership 1h", playbook_id="default"),
            2,
            "playbooks[0].id",
            "duplicate playbook id 'default' (first defined at playbooks/default.yaml:2)",
            id="duplicate-id",
        ),
        pytest.param(
            playbook_file("apologise 1h", "take_ownership 2h"),
            4,
            "playbooks[0].steps[0].step",
            "unknown step 'apologise'; the steps are empathise, take_ownership, lessen_inconvenience, "
            "manage_memory, extend_experience",
            id="unknown-step",
        ),
        pytest.param(
            playbook_file("empathise 1h", "take-ownership 2h"),
            6,
            "playbooks[0].steps[1].step",
            "unknown step 'take-ownership' (did you mean 'take_ownership'?)",
            id="misspelt-step",
        ),
        pytest.param(
            playbook_file("empathise 1h", "take_ownership 2h", "empathise 3h"),
            8,
            "playbooks[0].steps[2].step",
            "step 'empathise' is already steps[0]; each step comes once",
            id="step-twice",
        ),
        pytest.param(
            playbook_file("take_ownership 1h", "empathise 2h"),
            6,
            "playbooks[0].steps[1].step",
            "step 'empathise' comes after 'take_ownership'; the steps run in the order empathise, take_ownership,",
            id="out-of-order",
        ),
        pytest.param(
            playbook_file("empathise 1h", "lessen_inconvenience 1d"),
            4,  # the line of the list: its first step
            "playbooks[0].steps",
            "a playbook must have the step take_ownership: a case always has an owner",
            id="no-owner",
        ),
        pytest.param(
            "playbooks:\n  - id: late-delivery\n    steps: []\n",
            3,
            "playbooks[0].steps",
            "a playbook needs at least one step",
            id="no-steps",
        ),
        pytest.param(
            playbook_file("take_ownership 4 hours"),
            5,
            "playbooks[0].steps[0].due",
            "expected a duration like '30m', '36h', '7d' or '1d12h', got '4 hours'",
            id="bad-duration",
        ),
        pytest.param(
            playbook_file("take_ownership 1h", "manage_memory 3d after delivery"),
            7,
            "playbooks[0].steps[1].due",
            "a step is due after 'opening' or 'resolution', not 'delivery'",
            id="bad-anchor",
        ),
        pytest.param(
            playbook_file("take_ownership -1h"),
            5,
            "playbooks[0].steps[0].due",
            "a step cannot be due before the case is opened, got '-1h'",
            id="negative-due",
        ),
        pytest.param(
            playbook_file("take_ownership 1h", "manage_memory -2d after resolution"),
            7,
            "playbooks[0].steps[1].due",
            "a step cannot be due before the case is resolved",
            id="negative-due-after-resolution",
        ),
        pytest.param(
            playbook_file("take_ownership 1h").replace("        due: 1h", f"        title: {LONG}\n        due: 1h"),
            5,
            "playbooks[0].steps[0].title",
            "at most 200 characters",
            id="title-too-long",
        ),
        pytest.param(
            playbook_file("take_ownership 1h").replace("        due: 1h", "        title: ''\n        due: 1h"),
            5,
            "playbooks[0].steps[0].title",
            "at least 1 character",
            id="title-empty",
        ),
        pytest.param(
            playbook_file("take_ownership 1h").replace("        due: 1h", "        owner: lead\n        due: 1h"),
            5,
            "playbooks[0].steps[0].owner",
            "unknown field for a step",
            id="unknown-step-field",
        ),
        pytest.param(
            "playbooks:\n  - id: late-delivery\n    steps:\n      - step: take_ownership\n",
            4,
            "playbooks[0].steps[0].due",
            "missing; a step needs it",
            id="missing-due",
        ),
        pytest.param(
            "playbooks:\n  - late-delivery\n",
            2,
            "playbooks[0]",
            "a playbook is a mapping with an id and its steps",
            id="not-a-mapping",
        ),
        pytest.param(
            playbook_file("take_ownership 1h").replace("  - id: late-delivery", "  - id: late-delivery\n    id: lost"),
            3,
            "playbooks[0].id",
            "duplicate key",
            id="duplicate-key",
        ),
        pytest.param(
            "playbooks: [\n",
            2,
            "",
            "not valid YAML",
            id="not-yaml",
        ),
    ],
)
def test_every_problem_names_file_line_and_field(text: str, line: int, field: str, expected: str) -> None:
    found = problems(text)

    assert len(found) == 1, found
    (problem,) = found
    assert (problem.file, problem.line, problem.field) == (SHOP_FILE, line, field)
    assert expected in problem.reason
    assert str(problem).startswith(f"{SHOP_FILE}:{line}: ")


def test_a_set_without_a_default_playbook_is_refused() -> None:
    with pytest.raises(PlaybookSetError) as caught:
        parse_playbooks([(SHOP_FILE, playbook_file("take_ownership 1h"))])

    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (None, None, "playbooks")
    assert "no playbook has the id 'default'" in problem.reason


def test_a_default_playbook_with_problems_is_not_also_reported_missing() -> None:
    found = problems(playbook_file("take_ownership soon", playbook_id="default"))

    assert [problem.field for problem in found] == ["playbooks[0].id", "playbooks[0].steps[0].due"]


def test_all_problems_of_all_files_are_reported_and_nothing_loads(tmp_path: Path) -> None:
    (tmp_path / "default.yaml").write_text(DEFAULT_TEXT)
    (tmp_path / "airline.yaml").write_text(playbook_file("take_ownership 1h", "empathise 2h", playbook_id="lost-bag"))
    (tmp_path / "car_service.yaml").write_text(playbook_file("take_ownership 1h", playbook_id="rework"))
    (tmp_path / "shop.yml").write_text(playbook_file("take_ownership 1h", "lessen_inconvenience 1 day"))
    (tmp_path / "notes.txt").write_text("not a playbook file, and not read")

    with pytest.raises(PlaybookSetError) as caught:
        load_playbooks([tmp_path])

    error = caught.value
    assert [(p.file, p.line, p.field) for p in error.problems] == [
        (tmp_path / "airline.yaml", 6, "playbooks[0].steps[1].step"),
        (tmp_path / "shop.yml", 7, "playbooks[0].steps[1].due"),
    ]
    assert str(error).splitlines() == [str(problem) for problem in error.problems]
    assert error.field == "playbooks[0].steps[1].step"
    assert error.reason.endswith("(and 1 more)")

    (tmp_path / "airline.yaml").unlink()
    (tmp_path / "shop.yml").unlink()
    assert [playbook.id for playbook in load_playbooks([tmp_path])] == ["default", "rework"]


def test_a_file_that_cannot_be_read_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(PlaybookSetError) as caught:
        load_playbooks([PLAYBOOKS_DIR, tmp_path / "missing.yaml"])

    (problem,) = caught.value.problems
    assert problem.file == tmp_path / "missing.yaml"
    assert "cannot be read" in problem.reason


# Rules that name playbooks -----------------------------------------------------------------------------


def test_a_rule_naming_a_playbook_that_is_not_defined_is_reported_on_its_line() -> None:
    rules_file = Path("rules/shop.yaml")
    rules = parse_rules(
        [
            (
                rules_file,
                """\
rules:
  - id: shop-complaint
    kind: match
    on: complaint.filed
    playbook: late-delivery
  - id: shop-lost
    kind: match
    on: order.lost
    playbook: lost-parcel
  - id: shop-old
    enabled: false
    kind: match
    on: order.old
    playbook: old-playbook
  - id: shop-plain
    kind: match
    on: order.placed
""",
            )
        ]
    )
    playbooks = parse_playbooks([(DEFAULT_FILE, DEFAULT_TEXT), (SHOP_FILE, playbook_file("take_ownership 1h"))])

    found = unknown_playbooks(playbooks, rules)

    assert [(p.file, p.line, p.field) for p in found] == [(rules_file, 6, "playbook"), (rules_file, 10, "playbook")]
    assert "rule 'shop-lost' names the playbook 'lost-parcel'" in found[0].reason
    assert "the playbooks are default, late-delivery" in found[0].reason
    assert "rule 'shop-old' names the playbook 'old-playbook'" in found[1].reason
    assert playbooks.get("lost-parcel").id == DEFAULT_PLAYBOOK
