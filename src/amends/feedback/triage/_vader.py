"""VADER's `polarity_scores`, computed the same way with less work: each text's words are lower-cased once, where
VADER lower-cases the whole sentence again in its negation and idiom checks for every lexicon word.

The rule: the scores must equal VADER's to the last bit (tests/test_triage.py compares them on tricky and on real
texts). Every step below follows `vaderSentiment.SentimentIntensityAnalyzer` 3.3.2 line for line, quirks
included (the integer 0 of a word without valence, the order of the checks); only the lower-casing moved.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    scalar_inc_dec,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["polarity"]

_NEGATE = frozenset(NEGATE)
_PUNCTUATION = string.punctuation
# VADER's constants, typed (the package ships no type information).
_N_SCALAR: float = N_SCALAR
_C_INCR: float = C_INCR
_BOOSTERS: Mapping[str, float] = BOOSTER_DICT
_SPECIAL_CASES: Mapping[str, float] = SPECIAL_CASES


def polarity(analyser: SentimentIntensityAnalyzer, text: str) -> tuple[float, float, float]:
    """VADER's compound, positive and negative scores of `text`, exactly as `analyser.polarity_scores` gives them."""
    emojis: Mapping[str, str] = analyser.emojis
    if not text.isascii() and any(char in emojis for char in text):
        text = _describe_emojis(text, emojis)
    text = text.strip()
    # SentiText's words: each token stripped of punctuation unless two characters or fewer would be left (":)").
    words = [token if len(stripped := token.strip(_PUNCTUATION)) <= 2 else stripped for token in text.split()]
    capitals = sum(word.isupper() for word in words)
    is_cap_diff = 0 < len(words) - capitals < len(words)  # allcap_differential: some words in capitals, not all
    lower = [word.lower() for word in words]
    lexicon: Mapping[str, float] = analyser.lexicon
    last = len(words) - 1
    sentiments: list[float] = []
    for i, word in enumerate(lower):
        if word in _BOOSTERS or (i < last and word == "kind" and lower[i + 1] == "of"):
            sentiments.append(0)
        elif word in lexicon:
            sentiments.append(_valence(lexicon, words, lower, i, is_cap_diff=is_cap_diff))
        else:
            sentiments.append(0)
    if "but" in lower:
        sentiments = SentimentIntensityAnalyzer._but_check(words, sentiments)
    scores = analyser.score_valence(sentiments, text)
    return scores["compound"], scores["pos"], scores["neg"]


def _describe_emojis(text: str, emojis: Mapping[str, str]) -> str:
    # VADER's own loop: each emoji becomes its description, a space before it unless one is there already.
    out = ""
    prev_space = True
    for char in text:
        if char in emojis:
            if not prev_space:
                out += " "
            out += emojis[char]
            prev_space = False
        else:
            out += char
            prev_space = char == " "
    return out


def _valence(
    lexicon: Mapping[str, float], words: Sequence[str], lower: Sequence[str], i: int, *, is_cap_diff: bool
) -> float:
    item = lower[i]
    valence = lexicon[item]
    if item == "no" and i != len(words) - 1 and lower[i + 1] in lexicon:
        valence = 0.0
    if (
        (i > 0 and lower[i - 1] == "no")
        or (i > 1 and lower[i - 2] == "no")
        or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
    ):
        valence = lexicon[item] * _N_SCALAR
    if words[i].isupper() and is_cap_diff:
        valence = valence + _C_INCR if valence > 0 else valence - _C_INCR
    for start_i in range(3):
        if i > start_i and lower[i - (start_i + 1)] not in lexicon:
            s = scalar_inc_dec(words[i - (start_i + 1)], valence, is_cap_diff)
            if start_i == 1 and s != 0:
                s = s * 0.95
            if start_i == 2 and s != 0:
                s = s * 0.9
            valence = valence + s
            valence = _negation_check(valence, lower, start_i, i)
            if start_i == 2:
                valence = _special_idioms_check(valence, lower, i)
    return _least_check(valence, lexicon, lower, i)


def _negated(word: str) -> bool:
    return word in _NEGATE or "n't" in word


def _negation_check(valence: float, lower: Sequence[str], start_i: int, i: int) -> float:
    if start_i == 0 and _negated(lower[i - 1]):
        return valence * _N_SCALAR
    if start_i == 1:
        if lower[i - 2] == "never" and lower[i - 1] in ("so", "this"):
            return valence * 1.25
        if lower[i - 2] == "without" and lower[i - 1] == "doubt":
            return valence
        if _negated(lower[i - 2]):
            return valence * _N_SCALAR
    if start_i == 2:
        if (lower[i - 3] == "never" and lower[i - 2] in ("so", "this")) or lower[i - 1] in ("so", "this"):
            return valence * 1.25
        if lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
            return valence
        if _negated(lower[i - 3]):
            return valence * _N_SCALAR
    return valence


def _special_idioms_check(valence: float, lower: Sequence[str], i: int) -> float:
    onezero = f"{lower[i - 1]} {lower[i]}"
    twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
    twoone = f"{lower[i - 2]} {lower[i - 1]}"
    threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
    threetwo = f"{lower[i - 3]} {lower[i - 2]}"
    for sequence in (onezero, twoonezero, twoone, threetwoone, threetwo):
        if sequence in _SPECIAL_CASES:
            valence = _SPECIAL_CASES[sequence]
            break
    if len(lower) - 1 > i and (zeroone := f"{lower[i]} {lower[i + 1]}") in _SPECIAL_CASES:
        valence = _SPECIAL_CASES[zeroone]
    if len(lower) - 1 > i + 1 and (zeroonetwo := f"{lower[i]} {lower[i + 1]} {lower[i + 2]}") in _SPECIAL_CASES:
        valence = _SPECIAL_CASES[zeroonetwo]
    for n_gram in (threetwoone, threetwo, twoone):
        if n_gram in _BOOSTERS:
            valence = valence + _BOOSTERS[n_gram]
    return valence


def _least_check(valence: float, lexicon: Mapping[str, float], lower: Sequence[str], i: int) -> float:
    if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
        if lower[i - 2] != "at" and lower[i - 2] != "very":
            valence = valence * _N_SCALAR
    elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
        valence = valence * _N_SCALAR
    return valence
