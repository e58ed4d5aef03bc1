"""The fast triage backend: VADER's lexicon (read by `lexicon.py`) plus linear models over hashed word and character
n-grams, the topic taxonomy and the urgency rules. Offline: the lexicon ships in the vaderSentiment package and the
models in amends (`models/`), or in a directory `amends triage train` wrote from staff corrections.

Neutral (docs/feedback.md#neutral): the models know only positive and negative. A text is neutral when the
lexicon finds no opinion in it (|lexicon score| < NEUTRAL_LEXICON), the sentiment model leans neither way by much
(|2p - 1| < NEUTRAL_MARGIN), and it has no complaint cue (a negation, or a word of waiting or repetition):
"The parcel never arrived." has no opinion word, but it is a complaint, not a statement of fact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from amends.feedback.errors import ModelError
from amends.feedback.triage._features import Batch, featurise, normalise, truncate
from amends.feedback.triage._linear import FloatArray, LinearModel, count_cells
from amends.feedback.triage.lexicon import read_lexicon
from amends.feedback.triage.result import Reason, Reasons, Sentiment, TriageResult, topic_scores
from amends.feedback.triage.topics import Taxonomy
from amends.feedback.triage.urgency import UrgencyDecision, decide_urgency, signs_to_check

__all__ = [
    "COMPLAINT_CUES",
    "DEFAULT_MAX_CHARS",
    "NEUTRAL_LEXICON",
    "NEUTRAL_MARGIN",
    "SHIPPED_MODELS_DIR",
    "FastModels",
    "FastTriage",
    "complaint_cue",
    "is_neutral",
    "load_fast_models",
]

SHIPPED_MODELS_DIR = Path(str(resources.files(__package__))) / "models"
DEFAULT_MAX_CHARS = 5_000
NEUTRAL_LEXICON = 0.35  # |lexicon score| below this: at most a polite word ("please" alone gives 0.31), no opinion
# |2p - 1| below this, no lexicon opinion and no complaint cue: neutral. Set by hand with the model so that no text of
# tests/test_triage.py's neutral ones is negative; it calls 13.5 % of opinionated review sentences neutral
# (docs/feedback.md#neutral).
NEUTRAL_MARGIN = 0.55
# Fixed by hand, not tuned: VADER's negations (its NEGATE list, plus "no" and "nobody") and the words of a
# customer kept waiting or let down again. Any word ending in "n't" counts as a negation too.
COMPLAINT_CUES = frozenset(
    {
        "not", "no", "never", "nobody", "none", "nothing", "nowhere", "neither", "nor", "cannot", "without",
        "aint", "arent", "cant", "couldnt", "didnt", "doesnt", "dont", "hadnt", "hasnt", "havent", "isnt",
        "shouldnt", "wasnt", "werent", "wont", "wouldnt",
        "still", "again", "twice", "waited", "waiting",
    }
)  # fmt: skip
_TOP_REASONS = 3
_SHOWN_CHARS = 40


def complaint_cue(words: Sequence[str]) -> str | None:
    """The first complaint cue among a text's words (lower case, punctuation stripped), if any."""
    for word in words:
        if word in COMPLAINT_CUES or word.endswith(("n't", "n\u2019t")):
            return word
    return None


def is_neutral(lexicon_score: float, p: float, cue: str | None) -> bool:
    """The neutral rule: no lexicon opinion, a model that leans neither way by much, and no complaint cue."""
    return cue is None and abs(lexicon_score) < NEUTRAL_LEXICON and abs(2.0 * p - 1.0) < NEUTRAL_MARGIN


@dataclass(frozen=True, eq=False)
class FastModels:
    """The two models, and what staff corrections taught: exact texts with their labels, and topic words."""

    sentiment: LinearModel
    spam: LinearModel
    remembered: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # field -> normal text -> label
    topic_words: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    corrections: int = 0

    @property
    def version(self) -> str:
        base = self.sentiment.version
        return f"{base}+{self.corrections} corrections" if self.corrections else base

    def save(self, directory: Path) -> None:
        """Write the models (and the corrections' memory, if any) into `directory`."""
        self.sentiment.save(directory / "sentiment")
        self.spam.save(directory / "spam")
        if self.corrections:
            learned = {
                "corrections": self.corrections,
                "remembered": {k: dict(sorted(v.items())) for k, v in sorted(self.remembered.items())},
                "topic_words": {k: dict(sorted(v.items())) for k, v in sorted(self.topic_words.items())},
            }
            text = json.dumps(learned, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
            (directory / "corrections.json").write_text(text, encoding="utf-8")


def load_fast_models(directory: Path | None = None) -> FastModels:
    """Read models from `directory` (one `amends triage train` wrote), else the shipped ones."""
    chosen = directory or SHIPPED_MODELS_DIR
    if not chosen.is_dir():
        raise ModelError("triage_model_dir", f"no such directory: {chosen}")
    learned_file = chosen / "corrections.json"
    learned: dict[str, object] = {}
    if learned_file.is_file():
        try:
            learned = json.loads(learned_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(str(learned_file), f"cannot be read: {exc}") from exc
    return FastModels(
        sentiment=LinearModel.load(chosen / "sentiment"),
        spam=LinearModel.load(chosen / "spam"),
        remembered=learned.get("remembered", {}),  # type: ignore[arg-type]
        topic_words=learned.get("topic_words", {}),  # type: ignore[arg-type]
        corrections=int(learned.get("corrections", 0)),  # type: ignore[call-overload]
    )


class FastTriage:
    """Triage by lexicon and linear models; a batch is featurised and scored at once."""

    def __init__(self, models: FastModels, taxonomy: Taxonomy, *, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.models = models
        self.taxonomy = taxonomy.with_learned(models.topic_words) if models.topic_words else taxonomy
        self.max_chars = max_chars

    @property
    def model(self) -> str:
        return f"fast {self.models.version}"

    def triage_one(self, text: str) -> TriageResult:
        return self.triage_many([text])[0]

    def triage_many(self, texts: Sequence[str]) -> list[TriageResult]:
        cut = [truncate(text, self.max_chars) for text in texts]
        originals = [text for text, _ in cut]
        normal = [normalise(text) for text in originals]
        batch = featurise(normal)
        reading = read_lexicon(batch)
        lexical = reading.features
        cells = count_cells(batch)  # once for both models
        spam = self.models.spam.score(batch, np.zeros((len(normal), 0)), cells)
        sentiment = self.models.sentiment.score(batch, lexical, cells)
        spam_p = 1.0 / (1.0 + np.exp(-spam.logits))
        sentiment_p = 1.0 / (1.0 + np.exp(-sentiment.logits))
        starts = batch.piece_start.tolist()
        words = [batch.words[starts[row] : starts[row + 1]] for row in range(len(normal))]
        cues = [complaint_cue(text_words) for text_words in words]
        neutral = [
            is_neutral(c, p, cue) for c, p, cue in zip(lexical[:, 0].tolist(), sentiment_p.tolist(), cues, strict=True)
        ]
        spam_sign = np.where(spam_p >= self.models.spam.threshold, 1.0, -1.0)
        sentiment_sign = np.where(neutral, 0.0, np.where(sentiment_p >= 0.5, 1.0, -1.0))
        spam_pieces = _top_pieces(batch, spam.piece_contributions, spam_sign)
        sentiment_pieces = _top_pieces(batch, sentiment.piece_contributions, sentiment_sign)
        opinion_words = reading.reasons(sentiment_sign, _TOP_REASONS)
        # Per text from here on: plain Python values, read once, and what is the same for every text hoisted.
        spam_scores = np.round(spam_p, 4).tolist()
        sentiment_ps = sentiment_p.tolist()
        sentiment_scores = np.round(2.0 * sentiment_p - 1.0, 4).tolist()
        lexicon_scores = lexical[:, 0].tolist()
        is_spams = (spam_sign > 0).tolist()
        remembered = self.models.remembered
        remembered_spam = remembered.get("spam", {})
        remembered_sentiment = remembered.get("sentiment", {})
        remembered_topic = remembered.get("topic", {})
        model = self.model
        matches = self.taxonomy.match_many(normal, [tuple(word for word in row if word) for row in words])
        signs = signs_to_check(words)
        results = []
        for row, text in enumerate(normal):
            is_spam = is_spams[row]
            spam_reasons = spam_pieces[row]
            if (label := remembered_spam.get(text)) is not None:
                is_spam = label == "spam"
                spam_reasons = (Reason("the same text, corrected by staff", "correction", 0.0), *spam_reasons)
            p = sentiment_ps[row]
            label_, sentiment_reasons = _sentiment(
                sentiment_pieces[row], opinion_words[row], p, lexicon_scores[row], cues[row], neutral=neutral[row]
            )
            if (corrected := remembered_sentiment.get(text)) in ("negative", "neutral", "positive"):
                label_ = corrected  # type: ignore[assignment]
                sentiment_reasons = (Reason("the same text, corrected by staff", "correction", 0.0),)
            score = sentiment_scores[row]
            match = matches[row]
            topic, topic_reasons = match.topic, tuple(Reason(k, "keyword", 1.0) for k in match.matched)
            if (corrected_topic := remembered_topic.get(text)) is not None:
                topic = corrected_topic
                topic_reasons = (Reason("the same text, corrected by staff", "correction", 0.0),)
            urgency = decide_urgency(text, is_spam=is_spam, sentiment=label_, sentiment_score=score, signs=signs[row])
            urgency_reasons = _urgency_reasons(urgency)
            results.append(
                TriageResult(
                    spam=is_spam,
                    spam_score=spam_scores[row],
                    sentiment=label_,
                    sentiment_score=score,
                    topic=topic,
                    topic_scores=topic_scores(match.scores),
                    urgency=urgency.urgency,
                    reasons=Reasons(spam_reasons, sentiment_reasons, topic_reasons, urgency_reasons),
                    model=model,
                    truncated=cut[row][1],
                )
            )
        return results


@lru_cache(maxsize=1024)
def _urgency_reasons(urgency: UrgencyDecision) -> tuple[Reason, ...]:
    # Most texts share one of a few decisions ("no sign of urgency"): their reasons are built once.
    return (Reason(urgency.rule, "rule", 1.0), *(Reason(w, "keyword", 1.0) for w in urgency.words))


def _sentiment(
    model_reasons: tuple[Reason, ...],
    lexicon: tuple[Reason, ...],
    p: float,
    lexicon_score: float,
    cue: str | None,
    *,
    neutral: bool,
) -> tuple[Sentiment, tuple[Reason, ...]]:
    if neutral:
        return "neutral", (Reason("no opinion words, and the model leans neither way", "rule", 0.0),)
    label: Sentiment = "positive" if p >= 0.5 else "negative"
    rule: tuple[Reason, ...] = ()
    if cue is not None and is_neutral(lexicon_score, p, None):
        rule = (Reason(f"a complaint word ({cue}), so not neutral", "rule", 0.0),)
    return label, (*model_reasons, *lexicon, *rule)


def _top_pieces(batch: Batch, contributions: FloatArray, signs: FloatArray) -> list[tuple[Reason, ...]]:
    """Per text, the pieces that pushed its score furthest in the direction of its label (`signs`: +1 or -1 per
    text, 0 for none), found for the whole batch at once."""
    piece_rows = np.repeat(np.arange(len(batch.texts)), np.diff(batch.piece_start))
    values = contributions * signs[piece_rows]
    candidates = np.flatnonzero(values > 0)
    order = candidates[np.lexsort((-values[candidates], piece_rows[candidates]))]  # by text, strongest first
    # Each word once per text, at its strongest; then the first few of each text.
    ordered_rows = piece_rows[order]
    _, first = np.unique(ordered_rows * (len(batch.pieces) * 2 + 1) + batch.word_ids[order], return_index=True)
    order = order[np.sort(first)]
    ordered_rows = ordered_rows[np.sort(first)]
    rank = np.arange(len(order)) - np.searchsorted(ordered_rows, ordered_rows)
    kept = order[rank < _TOP_REASONS]
    reasons: list[list[Reason]] = [[] for _ in batch.texts]
    words, pieces = batch.words, batch.pieces
    weights = np.round(contributions[kept], 4).tolist()
    for index, row, weight in zip(kept.tolist(), piece_rows[kept].tolist(), weights, strict=True):
        word = words[index] or pieces[index]
        shown = word if len(word) <= _SHOWN_CHARS else word[: _SHOWN_CHARS - 1] + "…"
        reasons[row].append(Reason(shown, "model", weight))
    return [tuple(row_reasons) for row_reasons in reasons]
