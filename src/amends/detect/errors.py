"""Errors of the detection stage."""

from __future__ import annotations

from amends.errors import AmendsError, InvalidInput
from amends.yamldoc import FileProblem, FileProblemsError

__all__ = ["DetectError", "RuleError", "RuleProblem", "RuleSetError"]


class DetectError(AmendsError):
    """Base of the detection stage's errors."""


RuleProblem = FileProblem  # one thing wrong in a rule file: file, line, field and reason


class RuleError(DetectError, InvalidInput):
    """A rule that cannot run: the field (a path such as `rules[2].within`) and the reason."""


class RuleSetError(DetectError, FileProblemsError):
    """A set of rule files with one or more problems; nothing of it is loaded."""
