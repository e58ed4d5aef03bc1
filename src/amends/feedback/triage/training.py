"""Training: the shipped models from the public data (`amends triage build-models`), and models that learn from
staff corrections (`amends triage train`).

The recipe is fixed here, so a build is reproducible: the same data and the same locked packages give the same
files byte for byte (liblinear with a fixed seed; L-BFGS for corrections; both deterministic).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import minimize

from amends.errors import InvalidInput
from amends.feedback.errors import ModelError
from amends.feedback.triage._features import HASH_BITS, featurise, normalise, strip_word
from amends.feedback.triage._linear import FloatArray, LinearModel, fit_linear, vectorise
from amends.feedback.triage.datasets import LabelledSet, checksums, read_sentences, read_sms, read_youtube
from amends.feedback.triage.fast import FastModels
from amends.feedback.triage.lexicon import LEXICON_FEATURES, lexicon_features

__all__ = [
    "MODEL_VERSION",
    "Correction",
    "SpamRecipe",
    "build_models",
    "choose_spam_recipe",
    "out_of_fold_logits",
    "read_corrections",
    "train_from_corrections",
    "train_sentiment",
    "train_spam",
]

MODEL_VERSION = "2"
# Chosen by 5-fold CV on the sentences among 1, 3, 10, 30, 100, 300 (docs/benchmarks.md): 10 and 30 score within
# 0.001 macro-F1 of each other, and the more regularised model is kept (it is less sure of texts without opinion).
SENTIMENT_C = 10.0
SPAM_C = 30.0
_SPAM_SET_WEIGHT = 1000.0  # each spam data set weighs as much in total, its two classes equally within it
# The review sentences, all not spam, weigh one of these shares of one spam set in the spam model: picked by
# cross-validation (choose_spam_recipe), never set by hand. Spam is called from a probability of 0.5, the natural
# threshold of a model whose classes weigh the same: a grid of thresholds (0.3 to 0.7) picked by the same inner CV
# chose differently in every fold and scored lower outside it (docs/benchmarks.md#triage).
SPAM_REVIEW_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
SPAM_THRESHOLDS = (0.5,)
_MIN_TOPIC_WORD_COUNT = 2
CorrectionField = Literal["sentiment", "spam", "topic"]
_SENTIMENT_LABELS = {"negative", "neutral", "positive"}
_SPAM_LABELS = {"spam": "spam", "ham": "not_spam", "not_spam": "not_spam", "not spam": "not_spam"}
_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "this",
        "to",
        "was",
        "we",
        "were",
        "with",
        "you",
        "your",
        "not",
        "no",
        "very",
        "just",
        "they",
        "them",
        "there",
        "their",
        "been",
        "had",
        "did",
        "do",
        "does",
        "can",
        "could",
        "would",
        "will",
    }
)


@dataclass(frozen=True, slots=True)
class Correction:
    """What a staff member said a label should have been for a text."""

    text: str
    field: CorrectionField
    label: str


def train_sentiment(data: LabelledSet, *, about: dict[str, object] | None = None) -> LinearModel:
    """The sentiment model's recipe: NB-weighted TF-IDF n-grams plus the lexicon's scores, logistic regression."""
    batch = featurise([normalise(text) for text in data.texts])
    return fit_linear(
        "sentiment", MODEL_VERSION, batch, data.labels, lexicon_features(batch), LEXICON_FEATURES,
        c=SENTIMENT_C, nb_weighting=True, about=about,
    )  # fmt: skip


def out_of_fold_logits(data: LabelledSet, lexical: FloatArray, *, folds: int = 5) -> FloatArray:
    """The fast sentiment recipe's log-odds for each text of `data`, from the model trained on the other folds
    (stratified, seed 0)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(data.labels)
    logits = np.zeros(len(labels))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(np.zeros(len(labels)), labels):
        model = train_sentiment(data.subset(train))
        logits[test] = model.score(featurise([normalise(data.texts[i]) for i in test]), lexical[test]).logits
    return logits


def train_spam(
    sets: Sequence[LabelledSet],
    *,
    reviews: LabelledSet | None = None,
    recipe: SpamRecipe | None = None,
    about: dict[str, object] | None = None,
) -> LinearModel:
    """The spam model's recipe: TF-IDF n-grams, logistic regression, every spam data set and class weighed evenly;
    the review sentences, if given, as not spam with `recipe.review_weight` of one set's weight in all."""
    chosen = recipe or SpamRecipe()
    texts, labels, weights = _spam_rows(sets, reviews, chosen.review_weight)
    return fit_linear(
        "spam", MODEL_VERSION, featurise(texts), labels, np.zeros((len(texts), 0)), (), c=SPAM_C,
        sample_weight=weights, threshold=chosen.threshold, about=about,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SpamRecipe:
    """How much the review sentences weigh in the spam model (as not spam), and its decision threshold."""

    review_weight: float = 0.0
    threshold: float = 0.5
    f1: Mapping[tuple[float, float], float] = field(default_factory=dict)  # mean CV F1 per (weight, threshold)


def choose_spam_recipe(sets: Sequence[LabelledSet], reviews: LabelledSet, *, folds: int = 5) -> SpamRecipe:
    """The review weight and threshold (from SPAM_REVIEW_WEIGHTS x SPAM_THRESHOLDS) with the best mean F1 over the
    spam sets, by `folds`-fold stratified CV (seed 0): fold k of every set and of the reviews held out together,
    and each set's F1 counted over its held-out texts plus the held-out reviews as not spam, since triage reads
    customer text, not SMS. Ties go to the larger weight, then to the threshold nearer 0.5.

    On the training part of a benchmark fold this is the inner loop of a nested CV; `build_models` runs it on all
    the data and ships what it picks."""
    from sklearn.model_selection import StratifiedKFold

    texts, labels, _ = _spam_rows([*sets, reviews], None, 0.0)
    batch = featurise(texts)
    y = np.asarray(labels)
    y[len(texts) - len(reviews.texts) :] = 0  # the reviews' labels are sentiment; as spam they are all not spam
    segments, fold_of, start = [], np.full(len(texts), -1), 0
    for data in (*sets, reviews):
        segments.append(np.arange(start, start + len(data.texts)))
        splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
        for k, (_, test) in enumerate(splitter.split(np.zeros(len(data.labels)), np.asarray(data.labels))):
            fold_of[start + test] = k
        start += len(data.texts)
    review_rows = segments.pop()
    probabilities = {w: np.zeros(len(texts)) for w in SPAM_REVIEW_WEIGHTS}
    for k in range(folds):
        test = np.flatnonzero(fold_of == k)
        for w in SPAM_REVIEW_WEIGHTS:
            weights = np.zeros(len(texts))
            for rows in segments:
                in_train = rows[fold_of[rows] != k]
                weights[in_train] = _set_weights(y[in_train])
            in_train = review_rows[fold_of[review_rows] != k]
            weights[in_train] = w * _SPAM_SET_WEIGHT / max(len(in_train), 1)
            train = np.flatnonzero(weights > 0)
            model = fit_linear(
                "spam", MODEL_VERSION, batch.select(train), y[train].tolist(), np.zeros((len(train), 0)), (), c=SPAM_C,
                sample_weight=weights[train].tolist(),
            )  # fmt: skip
            logits = model.score(batch.select(test), np.zeros((len(test), 0))).logits
            probabilities[w][test] = 1.0 / (1.0 + np.exp(-logits))
    f1: dict[tuple[float, float], float] = {}
    for w, p in probabilities.items():
        for t in SPAM_THRESHOLDS:
            scored = [np.concatenate([rows, review_rows]) for rows in segments]
            f1[(w, t)] = float(np.mean([_f1(y[rows], p[rows] >= t) for rows in scored]))
    best = max(f1, key=lambda key: (round(f1[key], 9), key[0], -abs(key[1] - 0.5)))
    return SpamRecipe(review_weight=best[0], threshold=best[1], f1=f1)


def _spam_rows(
    sets: Sequence[LabelledSet], reviews: LabelledSet | None, review_weight: float
) -> tuple[list[str], list[int], list[float]]:
    texts: list[str] = []
    labels: list[int] = []
    weights: list[float] = []
    for data in sets:
        texts += [normalise(text) for text in data.texts]
        labels += data.labels
        weights += _set_weights(np.asarray(data.labels)).tolist()
    if reviews is not None and review_weight > 0:
        texts += [normalise(text) for text in reviews.texts]
        labels += [0] * len(reviews.texts)
        weights += [review_weight * _SPAM_SET_WEIGHT / len(reviews.texts)] * len(reviews.texts)
    return texts, labels, weights


def _set_weights(labels: npt.NDArray[np.int64]) -> FloatArray:
    # A data set weighs _SPAM_SET_WEIGHT in all, its classes equally within it.
    classes, counts = np.unique(labels, return_counts=True)
    per_class = _SPAM_SET_WEIGHT / len(classes) / counts
    return np.asarray(per_class[np.searchsorted(classes, labels)], dtype=np.float64)


def _f1(truth: npt.NDArray[np.int64], called: npt.NDArray[np.bool_]) -> float:
    hits = float(np.sum(called & (truth == 1)))
    return 2.0 * hits / max(float(np.sum(called) + np.sum(truth == 1)), 1.0)


def build_models(data: Path) -> FastModels:
    """Train the shipped models from the public data in `data` (docs/feedback.md#models)."""
    if not data.is_dir():
        raise ModelError("data", f"no such directory: {data}")
    sources = checksums(data)
    about = {
        "data": sources,
        "licence": "trained on CC BY 4.0 data from the UCI Machine Learning Repository; see DATA-LICENSE.md",
    }
    sentences = read_sentences(data)
    sentiment = train_sentiment(sentences, about={**about, "recipe": f"C={SENTIMENT_C}, NB-weighted"})
    spam_sets = [read_sms(data), read_youtube(data)]
    recipe = choose_spam_recipe(spam_sets, sentences)
    spam_about: dict[str, object] = {
        **about,
        "recipe": f"C={SPAM_C}, balanced, review sentences as not spam at {recipe.review_weight} of a set's weight, "
        f"threshold {recipe.threshold} (both by 5-fold CV)",
    }
    spam = train_spam(spam_sets, reviews=sentences, recipe=recipe, about=spam_about)
    return FastModels(sentiment=sentiment, spam=spam)


def read_corrections(path: Path) -> Iterator[Correction]:
    """Corrections from a JSONL file, one `{"text", "field", "label"}` per line; InvalidInput names the line."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(str(path), f"cannot be read: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise InvalidInput(where, f"not JSON: {exc}") from exc
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise InvalidInput(where, 'expected {"text": "...", "field": "...", "label": "..."} with a text')
        yield _correction(where, item["text"], item.get("field"), item.get("label"))


def _correction(where: str, text: str, field: object, label: object) -> Correction:
    if field not in ("sentiment", "spam", "topic"):
        raise InvalidInput(f"{where}.field", f"expected sentiment, spam or topic, got {field!r}")
    if not isinstance(label, str | bool) or (isinstance(label, str) and not label.strip()):
        raise InvalidInput(f"{where}.label", f"expected a label, got {label!r}")
    value = ("spam" if label else "not_spam") if isinstance(label, bool) else label.strip().lower()
    if field == "sentiment" and value not in _SENTIMENT_LABELS:
        raise InvalidInput(f"{where}.label", f"a sentiment is negative, neutral or positive, got {label!r}")
    if field == "spam":
        if value not in _SPAM_LABELS:
            raise InvalidInput(f"{where}.label", f"spam is spam or not_spam (or true/false), got {label!r}")
        value = _SPAM_LABELS[value]
    if field == "topic" and not re.match(r"^[a-z0-9][a-z0-9_.-]*$", value):
        raise InvalidInput(f"{where}.label", f"a topic name is lower-case letters and digits, got {label!r}")
    return Correction(text, field, value)


def train_from_corrections(corrections: Iterable[Correction], base: FastModels) -> FastModels:
    """Models that take staff corrections on top of `base`: the linear models are refitted on the corrected texts
    with the base weights as the prior (so what the base learned stays unless a correction argues against it),
    topics learn the words of the texts corrected to them, and every corrected text keeps its staff label."""
    items = list(corrections)
    remembered: dict[str, dict[str, str]] = {k: dict(v) for k, v in base.remembered.items()}
    for item in items:
        remembered.setdefault(item.field, {})[normalise(item.text)] = item.label
    sentiment_items = [c for c in items if c.field == "sentiment" and c.label != "neutral"]
    spam_items = [c for c in items if c.field == "spam"]
    sentiment = base.sentiment
    if sentiment_items:
        texts = [c.text for c in sentiment_items]
        labels = [int(c.label == "positive") for c in sentiment_items]
        sentiment = _refit(base.sentiment, texts, labels)
    spam = base.spam
    if spam_items:
        texts = [c.text for c in spam_items]
        spam = _refit(base.spam, texts, [int(c.label == "spam") for c in spam_items])
    return FastModels(
        sentiment=sentiment,
        spam=spam,
        remembered=remembered,
        topic_words=_topic_words([c for c in items if c.field == "topic"], base.topic_words),
        corrections=base.corrections + len(items),
    )


def _refit(model: LinearModel, texts: Sequence[str], labels: Sequence[int]) -> LinearModel:
    """Minimise the log-loss on the corrections plus (1/2C)·|w - w_base|², over the weights their n-grams touch.
    N-grams the base never kept become columns with the largest idf the base has (the rarest)."""
    c = SENTIMENT_C if model.name == "sentiment" else SPAM_C
    batch = featurise([normalise(text) for text in texts])
    dense = lexicon_features(batch) if model.dense_names else np.zeros((len(texts), 0))
    columns = np.union1d(model.columns, np.unique(batch.features)).astype(np.int32)
    old = np.searchsorted(columns, model.columns)
    idf = np.full(len(columns), float(model.idf.max(initial=1.0)), dtype=np.float32)
    idf[old] = model.idf
    base_weights = np.zeros(len(columns))
    base_weights[old] = model.weights
    lookup = np.full(1 << HASH_BITS, -1, dtype=np.int32)
    lookup[columns] = np.arange(len(columns), dtype=np.int32)
    x = vectorise(batch, lookup, idf).matrix()
    active = np.unique(x.indices)
    design = sparse.hstack([x[:, active], sparse.csr_matrix(dense), np.ones((len(texts), 1))], format="csr")
    start = np.concatenate([base_weights[active], model.dense_weights.astype(np.float64), [model.intercept]])
    y = np.asarray(labels, dtype=np.float64)

    def loss(theta: FloatArray) -> tuple[float, FloatArray]:
        z = design @ theta
        p = 1.0 / (1.0 + np.exp(-z))
        value = float(np.sum(np.logaddexp(0.0, z) - y * z)) + float(np.sum((theta - start) ** 2)) / (2.0 * c)
        return value, np.asarray(design.T @ (p - y)) + (theta - start) / c

    theta = minimize(loss, start, jac=True, method="L-BFGS-B").x
    weights = base_weights.copy()
    weights[active] = theta[: len(active)]
    n_dense = len(model.dense_names)
    return LinearModel(
        name=model.name,
        version=model.version,
        columns=columns,
        idf=idf,
        weights=weights.astype(np.float32),
        dense_names=model.dense_names,
        dense_weights=theta[len(active) : len(active) + n_dense].astype(np.float32),
        intercept=float(np.float32(theta[-1])),
        about={**model.about, "corrections": int(model.about.get("corrections", 0)) + len(texts)},
        threshold=model.threshold,
    )


def _topic_words(items: Sequence[Correction], base: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per topic, the content words of the texts staff put in it, weighed by how much more often they come with
    it than with other topics (a word seen only with one topic twice weighs 2/3). A word needs two corrections:
    one text alone is remembered as such, its words are not generalised."""
    by_topic: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        words = {w for w in (strip_word(p) for p in normalise(item.text).split(" ")) if len(w) > 2}
        by_topic[item.label].update(words - _STOPWORDS)
    overall: Counter[str] = Counter()
    for counts in by_topic.values():
        overall.update(counts)
    learned = {topic: dict(words) for topic, words in base.items()}
    for topic, counts in by_topic.items():
        for word, count in counts.items():
            weight = (count - 0.5 * (overall[word] - count)) / (1.0 + overall[word])
            if count >= _MIN_TOPIC_WORD_COUNT and weight > 0:
                learned.setdefault(topic, {})[word] = round(weight, 4)
    return learned
