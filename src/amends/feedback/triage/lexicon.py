"""Opinion words: VADER's lexicon (the `vaderSentiment` package, MIT; its word and emoji lists ship inside it),
read by amends' own scorer, which works on a whole batch at once.

Each word of a text takes its valence from the lexicon (-4 to +4), looked up as written (":)", "<3") and then
without the punctuation around it; an emoji takes the valence of the words VADER's emoji list describes it with.
"kind" and "sort" before "of" carry none ("kind of slow"). A valence is scaled by the booster word just before it
("very", "hardly": the package's booster list), turned round once for each negation among the three words before
it in the same sentence (the package's negation list, plus "no" and "nobody"; "without doubt" and "never so" are
not negations), and, in a text with "but", halved before the last "but" and made half as strong again after
it. The
sum of a text's valences, squashed into -1..1 (tanh of a quarter of it), is its **lexicon score**; the positive
and the negative parts squashed the same way are the other two features the sentiment model reads.

VADER's own `polarity_scores` reads one text at a time in Python; this reads a batch of texts' words in a few
array operations, about ten times as fast, and the sentiment model learns from it as well as from VADER's scores
(docs/benchmarks.md#triage). The ideas are the common ones of lexicon scoring; the code is amends' own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from amends.feedback.triage._features import Batch
from amends.feedback.triage._linear import FloatArray
from amends.feedback.triage.result import Reason

__all__ = ["LEXICON_FEATURES", "Lexicon", "LexiconReading", "lexicon", "lexicon_features", "read_lexicon"]

LEXICON_FEATURES = ("lexicon_score", "lexicon_positive", "lexicon_negative")
_NEGATION_REACH = 3  # a negation turns round the valence of the next three words
_SQUASH = 4.0  # tanh(sum / 4): one strong word (valence 3) scores 0.64, "please" alone (1.3) 0.31
_BEFORE_BUT, _AFTER_BUT = 0.5, 1.5
_SENTENCE_ENDS = (".", "!", "?")
_SOFTENERS = ["kind", "sort"]
_AFTER_NEVER = ["so", "this"]


class Lexicon:
    """The package's word valences, emoji descriptions, negations and boosters, loaded once."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SentimentIntensityAnalyzer

        analyser = SentimentIntensityAnalyzer()  # reads the lexicon files inside the package
        self.valences: Mapping[str, float] = analyser.lexicon
        self.emojis: Mapping[str, str] = analyser.emojis
        self.negations = frozenset(NEGATE) | {"no", "nobody"}
        self.boosters: Mapping[str, float] = BOOSTER_DICT

    def valence(self, piece: str, word: str) -> float:
        """The valence of a piece of text as written (":)"), else of its word (punctuation stripped); a word with
        emojis adds theirs to its letters'. 0 when it carries no opinion."""
        value = self.valences.get(piece)
        if value is None:
            value = self.valences.get(word)
        if value is not None:
            return float(value)
        if word.isascii():
            return 0.0
        total, letters = 0.0, []
        for char in word:
            if (described := self.emojis.get(char)) is not None:
                total += sum(self.valences.get(part, 0.0) for part in described.split(" "))
            else:
                letters.append(char)
        if total and letters:
            total += self.valences.get("".join(letters), 0.0)
        return total

    def is_negation(self, word: str) -> bool:
        return word in self.negations or word.endswith(("n't", "n\u2019t"))


@cache
def lexicon() -> Lexicon:
    return Lexicon()


@dataclass(frozen=True, slots=True)
class LexiconReading:
    """What the lexicon found in a batch: per text the three LEXICON_FEATURES, and per piece its own valence (0 for
    "kind" in "kind of"; before boosters, negations and "but", which a reason does not show)."""

    features: FloatArray  # texts x LEXICON_FEATURES, each -1..1
    valences: FloatArray  # per piece of the batch
    pieces: Sequence[str]  # the batch's pieces and words
    words: Sequence[str]
    piece_rows: npt.NDArray[np.int64]  # per piece: its text

    def reasons(self, signs: FloatArray, top: int) -> list[tuple[Reason, ...]]:
        """Per text, up to `top` opinion words whose valence points the way of its label (`signs`: +1 or -1 per
        text, 0 for none), strongest first, each word once."""
        rows = self.piece_rows
        hits = np.flatnonzero(self.valences * signs[rows] > 0)
        order = hits[np.lexsort((-np.abs(self.valences[hits]), rows[hits]))]  # by text, strongest first, stable
        found: list[list[Reason]] = [[] for _ in range(len(signs))]
        seen: list[set[str]] = [set() for _ in range(len(signs))]
        valences = lexicon().valences
        for index, row, value in zip(order.tolist(), rows[order].tolist(), self.valences[order].tolist(), strict=True):
            # The word, or the piece as written when that is what the lexicon knows (":)", "<3").
            piece, word = self.pieces[index], self.words[index]
            word = piece if piece in valences or not word else word
            if len(found[row]) < top and word not in seen[row]:
                seen[row].add(word)
                found[row].append(Reason(word, "lexicon", value))
        return [tuple(reasons) for reasons in found]


def lexicon_features(batch: Batch) -> FloatArray:
    """Per text of the batch: its lexicon score, positive part and negative part (LEXICON_FEATURES), each -1..1."""
    return read_lexicon(batch).features


def read_lexicon(batch: Batch) -> LexiconReading:
    """Read a batch's words against the lexicon: the features of each text, and the opinion words of each."""
    words = batch.words
    n_texts, n_words = len(batch.texts), len(words)
    rows = np.repeat(np.arange(n_texts), np.diff(batch.piece_start))
    if not n_words:
        return LexiconReading(np.zeros((n_texts, len(LEXICON_FEATURES))), np.zeros(0), (), (), rows)
    found = lexicon()
    valences, negations, boosts, buts, ends = _word_values(found, batch.pieces, words)
    # A word's sentence: a new one starts with every text and after a piece that ends one (. ! ?).
    sentence = np.cumsum(np.concatenate([[True], (rows[1:] != rows[:-1]) | ends[:-1]]))
    same_as_previous = np.concatenate([[False], sentence[1:] == sentence[:-1]])
    # "kind of" and "sort of" soften, they are not kind; "without doubt" and "never so" affirm.
    word_array = np.asarray(words, dtype=object)
    next_word = np.concatenate([word_array[1:], np.asarray([""], dtype=object)])
    next_word[~np.concatenate([same_as_previous[1:], [False]])] = ""
    valences = np.where(np.isin(word_array, _SOFTENERS) & (next_word == "of"), 0.0, valences)
    affirming = (word_array == "without") & (next_word == "doubt")
    affirming |= (word_array == "never") & np.isin(next_word, _AFTER_NEVER)
    negations = negations & ~affirming
    boosted = np.concatenate([[0.0], boosts[:-1]]) * same_as_previous
    values = valences * (1.0 + boosted)
    flips = np.zeros(n_words, dtype=np.int64)
    for back in range(1, _NEGATION_REACH + 1):
        flips[back:] += negations[:-back] & (sentence[back:] == sentence[:-back])
    values = np.where(flips % 2 == 1, -values, values)
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
    features = np.tanh(np.column_stack([total, positive, negative]) / _SQUASH)
    return LexiconReading(features, valences, batch.pieces, words, rows)


def _word_values(
    found: Lexicon, pieces: Sequence[str], words: Sequence[str]
) -> tuple[FloatArray, np.ndarray, FloatArray, np.ndarray, np.ndarray]:
    # Each distinct (piece, word) of the batch is looked up once.
    distinct: dict[tuple[str, str], int] = {}
    codes = np.fromiter(
        (distinct.setdefault(pair, len(distinct)) for pair in zip(pieces, words, strict=True)),
        dtype=np.int64, count=len(words),
    )  # fmt: skip
    vocabulary = list(distinct)
    n = len(vocabulary)
    valence = np.fromiter((found.valence(p, w) for p, w in vocabulary), dtype=np.float64, count=n)
    negation = np.fromiter((found.is_negation(w) for _, w in vocabulary), dtype=bool, count=n)
    boost = np.fromiter((found.boosters.get(w, 0.0) for _, w in vocabulary), dtype=np.float64, count=n)
    but = np.fromiter((w == "but" for _, w in vocabulary), dtype=bool, count=n)
    ends = np.fromiter((p.endswith(_SENTENCE_ENDS) for p, _ in vocabulary), dtype=bool, count=n)
    return valence[codes], negation[codes], boost[codes], but[codes], ends[codes]
