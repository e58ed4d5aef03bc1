"""Feedback: asking about every interaction, listening to what customers write (triage, routing), and
answering every one of them within the SLA (docs/feedback.md). Triage is pure: text in, labels out; it reads
no database and no clock.
"""

from amends.feedback.errors import FeedbackError, ModelError, TaxonomyError
from amends.feedback.triage import (
    Correction,
    Reason,
    Reasons,
    Triage,
    TriageResult,
    load_triage,
    train_from_corrections,
)

__all__ = [
    "Correction",
    "FeedbackError",
    "ModelError",
    "Reason",
    "Reasons",
    "TaxonomyError",
    "Triage",
    "TriageResult",
    "load_triage",
    "train_from_corrections",
]
