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
from dataclasses import dataclass
from typing import Literal

__all__ = ["STRONGLY_NEGATIVE", "Urgency", "UrgencyDecision", "decide_urgency"]

Urgency = Literal["low", "normal", "high"]
STRONGLY_NEGATIVE = -0.6


def _words(*words: str) -> re.Pattern[str]:
    parts = sorted((re.escape(w.rstrip("*")) + (r"\w*" if w.endswith("*") else "") for w in words), key=len)
    return re.compile(r"(?<!\w)(?:" + "|".join(reversed(parts)) + r")(?!\w)")


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


_ANY_SIGN = re.compile("|".join(pattern.pattern for pattern in (_SAFETY, _LEGAL, _URGENT, _REPEATED)))


@dataclass(frozen=True, slots=True)
class UrgencyDecision:
    """The urgency, the rule that decided it, and the words it matched."""

    urgency: Urgency
    rule: str
    words: tuple[str, ...]


_NO_SIGN_NEGATIVE = UrgencyDecision("normal", "negative", ())
_NO_SIGN = UrgencyDecision("low", "no sign of urgency", ())


def decide_urgency(normal_text: str, *, is_spam: bool, sentiment: str, sentiment_score: float) -> UrgencyDecision:
    """Apply the rules above to a normalised text and its spam and sentiment labels."""
    if is_spam:
        return UrgencyDecision("low", "spam", ())
    if _ANY_SIGN.search(normal_text) is None:  # most texts: one search, not four
        return _NO_SIGN_NEGATIVE if sentiment == "negative" else _NO_SIGN
    for rule, pattern in (("safety", _SAFETY), ("legal threat", _LEGAL), ("says urgent", _URGENT)):
        if found := _found(pattern, normal_text):
            return UrgencyDecision("high", rule, found)
    repeated = _found(_REPEATED, normal_text)
    if repeated and sentiment_score <= STRONGLY_NEGATIVE:
        return UrgencyDecision("high", "strongly negative and contacted again", repeated)
    if repeated:
        return UrgencyDecision("normal", "contacted again", repeated)
    if sentiment == "negative":
        return UrgencyDecision("normal", "negative", ())
    return UrgencyDecision("low", "no sign of urgency", ())


def _found(pattern: re.Pattern[str], text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(pattern.findall(text)))
