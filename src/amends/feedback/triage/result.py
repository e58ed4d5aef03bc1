"""What triage says of one text, and why; and the one interface every triage backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from amends.feedback.triage.urgency import Urgency

__all__ = ["Reason", "Reasons", "Sentiment", "Triage", "TriageResult"]

Sentiment = Literal["negative", "neutral", "positive"]
ReasonSource = Literal["model", "lexicon", "keyword", "rule", "correction", "embedding"]


@dataclass(frozen=True, slots=True)
class Reason:
    """One thing that drove a label: a word, n-gram, keyword or rule, what found it, and its weight (for a model:
    its contribution to the log-odds, positive towards spam or positive sentiment; for VADER: the word's
    valence; for a keyword: 1)."""

    feature: str
    source: ReasonSource
    weight: float

    def __str__(self) -> str:
        return f"{self.feature} ({self.source} {self.weight:+.2f})"


@dataclass(frozen=True, slots=True)
class Reasons:
    """Per label, the reasons that drove it, strongest first."""

    spam: tuple[Reason, ...]
    sentiment: tuple[Reason, ...]
    topic: tuple[Reason, ...]
    urgency: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class TriageResult:
    """Triage of one text: spam, sentiment (score -1..1), topic (None when no topic matched), urgency, why, and
    the model that decided (name and version)."""

    spam: bool
    spam_score: float  # probability of spam, 0..1
    sentiment: Sentiment
    sentiment_score: float  # -1 (negative) .. 1 (positive); near 0 with no opinion
    topic: str | None
    topic_scores: Mapping[str, float]
    urgency: Urgency
    reasons: Reasons
    model: str
    truncated: bool = False


class Triage(Protocol):
    """A triage backend (fast or embeddings): labels for many texts at once, or one."""

    @property
    def model(self) -> str:
        """The backend's name and its models' version, as results carry it."""
        ...

    def triage_many(self, texts: Sequence[str]) -> list[TriageResult]:
        """Triage texts in one batch, in order."""
        ...

    def triage_one(self, text: str) -> TriageResult:
        """Triage one text."""
        ...


def topic_scores(scores: Mapping[str, float]) -> Mapping[str, float]:
    """Only the topics that scored, for a short result (a plain dict: results are pickled and sent as JSON)."""
    return {name: score for name, score in scores.items() if score > 0}
