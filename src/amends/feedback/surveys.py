"""Honest questions: finds the words in a survey or a request that coach the score (DESIGN §1 C: ask for honest
feedback, never for a score), each with why it is a problem (`amends surveys check`, docs/feedback.md).

Four kinds of coaching, in English, German and Spanish:
- asking for a score ("please give us a 10", "5 stars", "rate us highly");
- telling what a low score does ("anything less than 5 counts as a failure", "my bonus depends on it");
- a rating chosen in advance (a radio button or option marked checked or selected, a `default_rating:`);
- a leading question ("how much did you love…", "wasn't it great?").

The rules are plain patterns over lines of text, so a finding names its line. They look for the usual ways
of coaching, not every way: a text that passes has none of these, which is not the same as being neutral.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["Coaching", "Finding", "check_lines", "check_text", "why"]


class Coaching(StrEnum):
    ASKS_FOR_SCORE = "asks_for_score"
    LABELS_LOW_SCORES = "labels_low_scores"
    PRESELECTED = "preselected_rating"
    LEADING = "leading_question"


_WHY = {
    Coaching.ASKS_FOR_SCORE: "it asks for a particular score: a rating the customer was asked to give measures the "
    "asking, not how the customer was served; ask what they like and what they don't, and leave the score to them",
    Coaching.LABELS_LOW_SCORES: "it tells the customer what a low score means or does to someone: they then score to "
    "spare a person, and those who were let down say nothing; a score is theirs to give without consequences "
    "named",
    Coaching.PRESELECTED: "a rating is chosen before the customer chooses: many keep what is chosen, so the result "
    "measures the default; leave every rating unselected",
    Coaching.LEADING: "a leading question suggests its answer; ask open questions ('What do you like? What don't "
    "you like?')",
}

_NUMBER = r"(?:10|ten|zehn|diez|9|nine|neun|nueve|5|five|fünf|cinco)"
_PATTERNS: tuple[tuple[Coaching, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        # --- asking for a score
        (Coaching.ASKS_FOR_SCORE, rf"\b(?:give|rate|score|grade|mark)\s+(?:us|me|him|her|them)\s+(?:an?\s+)?"
         rf"(?:perfect\s+|full\s+|solid\s+)?(?:{_NUMBER}\b|top\b|full marks|highly|high\b|well\b|the highest)"),
        (Coaching.ASKS_FOR_SCORE, r"\b(?:5|five|fünf|cinco)[\s-]*(?:stars?|sterne|estrellas)\b"),
        (Coaching.ASKS_FOR_SCORE, rf"\b(?:an?\s+)?(?:perfect\s+)?{_NUMBER}\s*(?:/|out of|von|de)\s*{_NUMBER}\b"),
        (Coaching.ASKS_FOR_SCORE, r"\b(?:please|kindly|bitte|por favor)\b[^.!?\n]{0,40}\b(?:tick|choose|select|"
         r"answer|say|pick|kreuzen|wählen|elija|marque)\b[^.!?\n]{0,20}['\"“„«]?(?:very satisfied|extremely likely|"
         r"excellent|outstanding|completely satisfied|sehr zufrieden|muy satisfecho|excelente)"),
        (Coaching.ASKS_FOR_SCORE, r"\b(?:we|i)\s+(?:hope|count on|rely on)\s+(?:you(?:'ll| will)?|your)\s+"
         r"(?:give|rate|score|top|highest|best)"),
        (Coaching.ASKS_FOR_SCORE, r"\b(?:volle punktzahl|bestnote|höchste bewertung|puntuación máxima|"
         r"nota máxima|máxima puntuación|top marks|full marks)\b"),
        (Coaching.ASKS_FOR_SCORE, rf"\b(?:geben sie uns|bewerten sie uns mit|denos|danos|califíquenos con|"
         rf"califícanos con)\s+(?:eine?n?\s+|un\s+)?{_NUMBER}\b"),
        # --- what a low score means or does
        (Coaching.LABELS_LOW_SCORES, r"\b(?:anything|any (?:score|rating|answer)|everything|a score|a rating|"
         r"scores?|ratings?)\s+(?:less than|lower than|below|under|other than)\s+(?:an?\s+)?\d+\b[^.!?\n]{0,40}\b"
         r"(?:fail|failure|failing|bad|negative|counts|means|is treated|hurts)"),
        (Coaching.LABELS_LOW_SCORES, r"\b(?:below|under|less than|lower than)\s+(?:an?\s+)?\d+\s+(?:is|counts as|"
         r"means|equals)\s+(?:an?\s+)?(?:fail|failure|failing|bad|zero|negative)"),
        (Coaching.LABELS_LOW_SCORES, r"\bonly\s+(?:an?\s+)?(?:\d+|top)s?\s+(?:counts?|matters?|is good|are good)"),
        (Coaching.LABELS_LOW_SCORES, r"\b(?:counts?|is counted|is considered|is seen)\s+as\s+(?:an?\s+)?"
         r"(?:fail|failure|failing grade|zero)\b"),
        (Coaching.LABELS_LOW_SCORES, r"\b(?:my|our|his|her|their|the staff'?s?|the team'?s?)\s+(?:job|jobs|bonus|"
         r"bonuses|pay|salary|review|performance review|commission)\s+(?:depends?|relies|rely|is based)\s+on"),
        (Coaching.LABELS_LOW_SCORES, r"\b(?:alles|jede (?:bewertung|note))\s+unter\s+\d+\s+(?:gilt|zählt|ist)\b"),
        (Coaching.LABELS_LOW_SCORES, r"\bcualquier (?:nota|puntuación|valoración)\s+(?:inferior|menor)\s+a\s+\d+"),
        # --- a rating chosen in advance
        (Coaching.PRESELECTED, r"<input\b(?=[^>]*\btype\s*=\s*['\"]?(?:radio|checkbox))(?=[^>]*\bchecked\b)[^>]*>"),
        (Coaching.PRESELECTED, r"<option\b[^>]*\bselected\b[^>]*>"),
        (Coaching.PRESELECTED, r"^\s*[\"']?(?:default_rating|rating_default|default_score|preselected(?:_rating)?|"
         r"selected_rating)[\"']?\s*[:=]\s*(?!\s*(?:null|none|~|\"\"|''|$))"),
        # --- leading questions
        (Coaching.LEADING, r"\bhow\s+(?:much|great|excellent|amazing|wonderful|good|happy|delighted)\s+"
         r"(?:did you|were you|was)\s*(?:love|enjoy|like|with|our|the|it)?"),
        (Coaching.LEADING, r"\b(?:didn't|did not|wasn't|weren't|don't|do not) you\s+(?:love|enjoy|agree|think)\b"),
        (Coaching.LEADING, r"\b(?:wasn't|was not|isn't|is not) (?:it|our \w+|the \w+)\s+(?:great|excellent|amazing|"
         r"wonderful|fantastic)\b"),
        (Coaching.LEADING, r"\bwie sehr hat (?:es )?ihnen\b[^?\n]{0,40}gefallen"),
        (Coaching.LEADING, r"\bcuánto (?:le|te) (?:encantó|gustó)\b"),
    )
)  # fmt: skip
# A Jinja condition before `checked` on the line: the page showing the customer's own answer again.
_CONDITIONAL = re.compile(r"\{%-?\s*if\b[^%]*%\}\s*(?:checked|selected)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Finding:
    """One place that coaches the score: where, what it says, and why it is a problem."""

    kind: Coaching
    phrase: str
    where: str  # a file, or a template and its part
    line: int | None

    @property
    def why(self) -> str:
        return why(self.kind)


def why(kind: Coaching) -> str:
    return _WHY[kind]


def check_text(text: str, *, where: str) -> list[Finding]:
    """Every coaching phrase in a text (a template's part, a page's text), with its line within the text."""
    return check_lines(text.splitlines(), where=where)


def check_lines(lines: Sequence[str], *, where: str, first_line: int = 1) -> list[Finding]:
    findings: list[Finding] = []
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        for kind, pattern in _PATTERNS:
            for match in pattern.finditer(line):
                if kind is Coaching.PRESELECTED and _CONDITIONAL.search(match.group(0)):
                    continue
                findings.append(Finding(kind, match.group(0).strip(), where, number))
    return _unique(findings)


def check_files(paths: Iterable[Path]) -> list[Finding]:
    """Every coaching phrase in the files (a directory: its *.yaml, *.yml, *.html, *.txt and *.md files), by line."""
    findings: list[Finding] = []
    for path in paths:
        files = (
            sorted(file for file in path.rglob("*") if file.suffix in (".yaml", ".yml", ".html", ".txt", ".md"))
            if path.is_dir()
            else [path]
        )
        for file in files:
            findings += check_lines(file.read_text(encoding="utf-8").splitlines(), where=str(file))
    return findings


def _unique(findings: list[Finding]) -> list[Finding]:
    """One finding per kind, line and place: two patterns of a kind matching the same words say it once."""
    seen: set[tuple[Coaching, int | None]] = set()
    kept = []
    for finding in findings:
        if (finding.kind, finding.line) not in seen:
            seen.add((finding.kind, finding.line))
            kept.append(finding)
    return kept
