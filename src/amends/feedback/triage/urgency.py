"""Urgency by explicit rules, in order (docs/feedback.md#urgency). The first rule that holds decides:

1. spam: low.
2. safety (injury, fire, smoke, an allergic reaction, brakes that failed, ...): high.
3. a legal threat (lawyer, sue, court, chargeback, ...): high.
4. the customer says it is urgent (urgent, asap, emergency, immediately): high.
5. strongly negative (sentiment score <= -0.6) and a sign of repeated contact ("third time", "still waiting",
   "nobody answers", "again"): high.
6. negative, or a sign of repeated contact: normal.
7. otherwise: low.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from amends.feedback.triage.keywords import KeywordGroups

__all__ = ["STRONGLY_NEGATIVE", "Urgency", "UrgencyDecision", "decide_urgency", "signs_to_check"]

Urgency = Literal["low", "normal", "high"]
STRONGLY_NEGATIVE = -0.6


def _words(*words: str) -> tuple[str, ...]:
    return words


_SAFETY = _words(
    "injur*",
    "hurt",
    "bleeding",
    "burn",
    "burned",
    "burnt",
    "fire",
    "smoke",
    "smoking",
    "caught fire",
    "explod*",
    "electric shock",
    "shocked me",
    "gas leak",
    "poison*",
    "food poisoning",
    "allergic reaction",
    "choking",
    "unsafe",
    "dangerous",
    "hazard*",
    "brakes failed",
    "brake failure",
    "accident",
    "ambulance",
    "hospital",
    "verletz*",
    "feuer",
    "rauch",
    "brand",
    "gefährlich",
    "unfall",
    "krankenhaus",
    "vergiftung",
    "herid*",
    "lesión",
    "fuego",
    "humo",
    "peligros*",
    "accidente",
    "intoxicación",
    "quemadura*",
)
_LEGAL = _words(
    "lawyer*",
    "attorney*",
    "solicitor*",
    "sue",
    "suing",
    "lawsuit",
    "legal action",
    "court",
    "small claims",
    "trading standards",
    "ombudsman",
    "consumer protection",
    "chargeback",
    "report you",
    "anwalt",
    "anwältin",
    "klage",
    "verklagen",
    "gericht",
    "verbraucherzentrale",
    "abogad*",
    "demanda*",
    "denuncia*",
    "tribunal",
    "juzgado",
)
_URGENT = _words(
    "urgent*",
    "asap",
    "emergency",
    "immediately",
    "right now",
    "right away",
    "dringend*",
    "sofort",
    "notfall",
    "urgente*",
    "inmediatamente",
    "emergencia",
)
_REPEATED = _words(
    "again",
    "still",
    "second time",
    "third time",
    "fourth time",
    "several times",
    "many times",
    "once more",
    "nobody answers",
    "no one answers",
    "nobody answered",
    "no one answered",
    "no response",
    "no reply",
    "never heard back",
    "still waiting",
    "already called",
    "already wrote",
    "already emailed",
    "keep calling",
    "weeks",
    "schon wieder",
    "immer noch",
    "keine antwort",
    "otra vez",
    "todavía",
    "sin respuesta",
)


_SIGNS = KeywordGroups.of({"safety": _SAFETY, "legal threat": _LEGAL, "says urgent": _URGENT, "repeated": _REPEATED})
_ALL_SIGNS = frozenset(_SIGNS.names)


@dataclass(frozen=True, slots=True)
class UrgencyDecision:
    """The urgency, the rule that decided it, and the words it matched."""

    urgency: Urgency
    rule: str
    words: tuple[str, ...]


_NO_SIGN_NEGATIVE = UrgencyDecision("normal", "negative", ())
_NO_SIGN = UrgencyDecision("low", "no sign of urgency", ())


def signs_to_check(words: Sequence[Sequence[str]]) -> list[frozenset[str]]:
    """Per text of a batch (given as its words, punctuation stripped): the signs ("safety", "legal threat", "says
    urgent", "repeated") whose words it could hold; `decide_urgency(..., signs=...)` searches only for those."""
    return _SIGNS.groups_to_search(words)


def decide_urgency(
    normal_text: str,
    *,
    is_spam: bool,
    sentiment: str,
    sentiment_score: float,
    signs: Collection[str] = _ALL_SIGNS,
) -> UrgencyDecision:
    """Apply the rules above to a normalised text and its spam and sentiment labels, searching it for the words of
    `signs` only (all by default; `signs_to_check` gives fewer for most texts)."""
    if is_spam:
        return UrgencyDecision("low", "spam", ())
    patterns = _SIGNS.patterns
    for rule in ("safety", "legal threat", "says urgent"):
        if rule in signs and (found := _found(patterns[rule], normal_text)):
            return UrgencyDecision("high", rule, found)
    repeated = _found(patterns["repeated"], normal_text) if "repeated" in signs else ()
    if repeated and sentiment_score <= STRONGLY_NEGATIVE:
        return UrgencyDecision("high", "strongly negative and contacted again", repeated)
    if repeated:
        return UrgencyDecision("normal", "contacted again", repeated)
    if sentiment == "negative":
        return UrgencyDecision("normal", "negative", ())
    return UrgencyDecision("low", "no sign of urgency", ())


def _found(pattern: re.Pattern[str], text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(pattern.findall(text)))
