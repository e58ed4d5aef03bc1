"""Feedback's errors, under amends' one tree (amends/errors.py).

FeedbackError
 ├── ModelError      a triage model that cannot be read or built (names the file and why)
 └── TaxonomyError   a topic taxonomy file with problems (each with its file, line and field)
"""

from __future__ import annotations

from amends.errors import AmendsError, InvalidInput
from amends.yamldoc import FileProblemsError

__all__ = ["FeedbackError", "ModelError", "TaxonomyError"]


class FeedbackError(AmendsError):
    """Base of the errors the feedback stage raises."""


class ModelError(FeedbackError, InvalidInput):
    """A triage model directory, data set or backend that cannot be used: names the file or setting and why."""


class TaxonomyError(FeedbackError, FileProblemsError):
    """A topic taxonomy that cannot be loaded; nothing of it is used."""
