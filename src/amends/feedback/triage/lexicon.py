"""Opinion words: VADER's lexicon (the `vaderSentiment` package, MIT; its word and emoji lists ship inside it),
read by amends' own scorer, which works on a whole batch at once.

Each word of a text takes its valence from the lexicon (-4 to +4; an emoji the valence of the words VADER's emoji
list describes it with), scaled by the booster word just before it ("very", "hardly": the package's booster
list), turned round by a negation in the three words before it (the package's negation list, plus "no" and
"nobody"), and, in a text with "but", halved before the last "but" and made half as strong again after it. The
sum of a text's valences, squashed into -1..1 (tanh of a quarter of it), is its **lexicon score**; the positive
and the negative parts squashed the same way are the other two features the sentiment model reads.

VADER's own `polarity_scores` reads one text at a time in Python; this reads a batch of texts' words in a few
array operations, about ten times as fast, and the sentiment model learns from it as well as from VADER's scores
(docs/benchmarks.md#triage). The ideas are the common ones of lexicon scoring; the code is amends' own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np

from amends.feedback.triage._features import Batch
from amends.feedback.triage._linear import FloatArray
from amends.feedback.triage.result import Reason

__all__ = ["LEXICON_FEATURES", "Lexicon", "lexicon", "lexicon_features", "lexicon_reasons"]

LEXICON_FEATURES = ("lexicon_score", "lexicon_positive", "lexicon_negative")
_NEGATION_REACH = 3  # a negation turns round the valence of the next three words
_SQUASH = 4.0  # tanh(sum / 4): one strong word (valence 3) scores 0.64, "please" alone (1.3) 0.31
_BEFORE_BUT, _AFTER_BUT = 0.5, 1.5


class Lexicon:
    """The package's word valences, emoji descriptions, negations and boosters, loaded once."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SentimentIntensityAnalyzer

        analyser = SentimentIntensityAnalyzer()  # reads the lexicon files inside the package
        self.valences: Mapping[str, float] = analyser.lexicon
        self.emojis: Mapping[str, str] = analyser.emojis
        self.negations = frozenset(NEGATE) | {"no", "nobody"}
        self.boosters: Mapping[str, float] = BOOSTER_DICT

    def valence(self, word: str) -> float:
        """A word's valence (0 when it is not an opinion word); for a word with emojis, theirs."""
        value = self.valences.get(word)
        if value is not None:
            return float(value)
        if word.isascii():
            return 0.0
        total = 0.0
        for char in word:
            if (described := self.emojis.get(char)) is not None:
                total += sum(self.valences.get(part, 0.0) for part in described.split(" "))
        return total

    def is_negation(self, word: str) -> bool:
        return word in self.negations or word.endswith(("n't", "n\u2019t"))


@cache
def lexicon() -> Lexicon:
    return Lexicon()


def lexicon_features(batch: Batch) -> FloatArray:
    """Per text of the batch: its lexicon score, positive part and negative part (LEXICON_FEATURES), each -1..1."""
    words = batch.words
    n_texts, n_words = len(batch.texts), len(words)
    if not n_words:
        return np.zeros((n_texts, len(LEXICON_FEATURES)))
    found = lexicon()
    valences, negations, boosts, buts = _word_values(found, words)
    rows = np.repeat(np.arange(n_texts), np.diff(batch.piece_start))
    same_row_as_previous = np.concatenate([[False], rows[1:] == rows[:-1]])
    boosted = np.concatenate([[0.0], boosts[:-1]]) * same_row_as_previous
    values = valences * (1.0 + boosted)
    negated = np.zeros(n_words, dtype=bool)
    for back in range(1, _NEGATION_REACH + 1):
        negated[back:] |= negations[:-back] & (rows[back:] == rows[:-back])
    values = np.where(negated, -values, values)
    if buts.any():
        index = np.arange(n_words)
        last_but = np.full(n_texts, -1)
        np.maximum.at(last_but, rows[buts], index[buts])
        where = last_but[rows]
        scale = np.where(where < 0, 1.0, np.where(index < where, _BEFORE_BUT, np.where(index > where, _AFTER_BUT, 1.0)))
        values = values * scale
    total = np.bincount(rows, weights=values, minlength=n_texts)
    positive = np.bincount(rows, weights=np.maximum(values, 0.0), minlength=n_texts)
    negative = np.bincount(rows, weights=np.maximum(-values, 0.0), minlength=n_texts)
    return np.tanh(np.column_stack([total, positive, negative]) / _SQUASH)


def _word_values(found: Lexicon, words: Sequence[str]) -> tuple[FloatArray, np.ndarray, FloatArray, np.ndarray]:
    # Each distinct word of the batch is looked up once.
    distinct: dict[str, int] = {}
    codes = np.fromiter((distinct.setdefault(w, len(distinct)) for w in words), dtype=np.int64, count=len(words))
    vocabulary = list(distinct)
    valence = np.fromiter((found.valence(w) for w in vocabulary), dtype=np.float64, count=len(vocabulary))
    negation = np.fromiter((found.is_negation(w) for w in vocabulary), dtype=bool, count=len(vocabulary))
    boost = np.fromiter((found.boosters.get(w, 0.0) for w in vocabulary), dtype=np.float64, count=len(vocabulary))
    but = np.fromiter((w == "but" for w in vocabulary), dtype=bool, count=len(vocabulary))
    return valence[codes], negation[codes], boost[codes], but[codes]


def lexicon_reasons(words: Sequence[str]) -> tuple[Reason, ...]:
    """The opinion words among a text's words (punctuation already stripped), strongest first, as reasons."""
    found = lexicon()
    valences = found.valences
    hits = {}
    for word in words:
        value = valences.get(word)
        if value is None and word and not word.isascii():
            value = found.valence(word)  # emojis
        if value:
            hits[word] = float(value)
    return tuple(Reason(w, "lexicon", v) for w, v in sorted(hits.items(), key=lambda item: -abs(item[1])))
