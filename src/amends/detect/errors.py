"""Errors of the detection stage."""

from __future__ import annotations

from amends.errors import AmendsError, InvalidInput
from amends.yamldoc import FileProblem

__all__ = ["DetectError", "RuleError", "RuleProblem", "RuleSetError"]


class DetectError(AmendsError):
    """Base of the detection stage's errors."""


RuleProblem = FileProblem  # one thing wrong in a rule file: file, line, field and reason


class RuleError(DetectError, InvalidInput):
    """A rule that cannot run: the field (a path such as `rules[2].within`) and the reason."""


class RuleSetError(DetectError, InvalidInput):
    """A set of rule files with one or more problems; nothing of it is loaded."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first.field, f"{first.reason}{more}")
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)
