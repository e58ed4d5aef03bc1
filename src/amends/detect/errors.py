"""Errors of the detection stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amends.errors import AmendsError, InvalidInput

__all__ = ["DetectError", "RuleError", "RuleProblem", "RuleSetError"]


class DetectError(AmendsError):
    """Base of the detection stage's errors."""


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One thing wrong in a rule file: where (file, line, field) and why, in a sentence."""

    file: Path | None
    line: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = "" if self.file is None else f"{self.file}:{self.line or 1}: "
        return f"{where}{self.field}: {self.reason}" if self.field else f"{where}{self.reason}"


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
