"""The topic taxonomy: topics with keyword lexicons (a YAML file), matched on word boundaries in the normal form
of a text, plus the words staff corrections taught (`amends triage train`). A file with any problem loads
nothing: TaxonomyError lists each problem with its file, line and field.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amends.feedback.errors import TaxonomyError
from amends.feedback.triage._features import normalise
from amends.feedback.triage.keywords import KeywordGroups, keyword_pattern
from amends.yamldoc import FileProblem, FileReport, parse_yaml, pydantic_reason

__all__ = ["DEFAULT_TAXONOMY_FILE", "Taxonomy", "Topic", "TopicMatch", "load_taxonomy", "parse_taxonomy"]

DEFAULT_TAXONOMY_FILE = Path(str(resources.files(__package__))) / "taxonomy.yaml"
_NAME = r"^[a-z0-9][a-z0-9_.-]*$"


class _TopicDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    keywords: list[str] = Field(min_length=1)


class _TaxonomyDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topics: dict[str, _TopicDoc] = Field(min_length=1)


@dataclass(frozen=True)
class Topic:
    """One topic and the pattern of its keywords."""

    name: str
    description: str
    keywords: tuple[str, ...]
    pattern: re.Pattern[str] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """The topic found (None when no keyword matched), every topic's score, and the keywords that matched."""

    topic: str | None
    scores: Mapping[str, float]
    matched: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    """Topics in file order (the first wins a tie), and learned word weights per topic from corrections."""

    topics: tuple[Topic, ...]
    learned: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # topic -> word -> weight
    source: str = "shipped"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(topic.name for topic in self.topics)

    def with_learned(self, learned: Mapping[str, Mapping[str, float]]) -> Taxonomy:
        """The same taxonomy with the word weights learned from staff corrections."""
        return Taxonomy(self.topics, learned, self.source)

    def match_many(self, normal_texts: Sequence[str], words: Sequence[tuple[str, ...]]) -> list[TopicMatch]:
        """`match` for a batch of texts (each given with its words): a text is searched only for the topics whose
        keywords its words could hold; most are searched for none."""
        if self.learned:
            return [self.match(text, text_words) for text, text_words in zip(normal_texts, words, strict=True)]
        return [
            self._match(text, text_words, topics) if topics else self._no_match
            for text, text_words, topics in zip(normal_texts, words, self._groups.groups_to_search(words), strict=True)
        ]

    def match(self, normal_text: str, words: tuple[str, ...]) -> TopicMatch:
        """Score every topic on a normalised text (and its words, punctuation stripped): one point per distinct
        keyword found, plus the learned weights of the words present."""
        return self._match(normal_text, words, self.names)

    def _match(self, normal_text: str, words: tuple[str, ...], searched: Collection[str]) -> TopicMatch:
        scores: dict[str, float] = {}
        matched: dict[str, list[str]] = {}
        present = tuple(dict.fromkeys(words))
        for topic in self.topics:
            hits = sorted(set(topic.pattern.findall(normal_text))) if topic.name in searched else []
            scores[topic.name], matched[topic.name] = float(len(hits)), hits
        for name, learned in self.learned.items():  # a learned topic may be one the file does not have
            learned_hits = [w for w in present if w in learned]
            scores[name] = scores.get(name, 0.0) + sum(learned[w] for w in learned_hits)
            matched[name] = matched.get(name, []) + [w for w in learned_hits if w not in matched.get(name, [])]
        scores = {name: round(score, 4) for name, score in scores.items()}
        best = max(scores, key=lambda name: scores[name], default=None)  # the first in order wins a tie
        if best is None or scores[best] <= 0:
            return TopicMatch(None, scores, ())
        return TopicMatch(best, scores, tuple(matched[best]))

    @cached_property
    def _no_match(self) -> TopicMatch:
        return TopicMatch(None, MappingProxyType(dict.fromkeys(self.names, 0.0)), ())

    @cached_property
    def _groups(self) -> KeywordGroups:
        return KeywordGroups.of({topic.name: topic.keywords for topic in self.topics})


def parse_taxonomy(text: str, file: Path | None = None) -> Taxonomy:
    """Check a taxonomy given as text; raises TaxonomyError listing every problem."""
    problems: list[FileProblem] = []
    parsed = parse_yaml(file, text, problems)
    if parsed is None:
        raise TaxonomyError(problems)
    document, lines = parsed
    report = FileReport(file, lines, problems)
    if not isinstance(document, dict):
        report.add((), "a taxonomy is a mapping with the key topics; see docs/feedback.md#topics")
        raise TaxonomyError(problems)
    try:
        doc = _TaxonomyDoc.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors():
            report.add(tuple(error["loc"]), pydantic_reason(error, what="a taxonomy"))
        raise TaxonomyError(problems) from exc
    topics = []
    for name, topic in doc.topics.items():
        if not re.match(_NAME, name):
            report.add(("topics", name), "a topic name is lower-case letters, digits, '.', '_' or '-'")
        for index, keyword in enumerate(topic.keywords):
            if not normalise(keyword).rstrip("*"):
                report.add(("topics", name, "keywords", index), "an empty keyword matches everything")
        if not problems:
            topics.append(Topic(name, topic.description, tuple(topic.keywords), keyword_pattern(topic.keywords)))
    if problems:
        raise TaxonomyError(problems)
    return Taxonomy(tuple(topics), source=str(file) if file else "text")


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Read a taxonomy file (default: the shipped one)."""
    chosen = path or DEFAULT_TAXONOMY_FILE
    try:
        text = chosen.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError([FileProblem(chosen, None, "", f"cannot be read: {exc}")]) from exc
    taxonomy = parse_taxonomy(text, chosen)
    return taxonomy if path else Taxonomy(taxonomy.topics, source="shipped")
