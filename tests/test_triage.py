"""Triage as a user meets it: labels and reasons on clear texts, neutral texts, truncation, taxonomies, corrections
through `amends triage train`, and the shipped models matching a fresh build from the public data."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amends.config import load_settings
from amends.errors import InvalidInput
from amends.feedback import ModelError, TaxonomyError, TriageResult, load_triage
from amends.feedback.triage import Correction, read_corrections, train_from_corrections
from amends.feedback.triage._features import TRUNCATION_MARKER, normalise, strip_word, truncate
from amends.feedback.triage.fast import SHIPPED_MODELS_DIR, FastTriage, load_fast_models
from amends.feedback.triage.keywords import KeywordGroups
from amends.feedback.triage.topics import load_taxonomy, parse_taxonomy
from tests.conftest import REQUIRE_SERVICES

DATA = Path(os.environ.get("AMENDS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

NEUTRAL_TEXTS = [
    "My order number is 12345.",
    "I moved to a new address last week.",
    "What time do you open on Saturday?",
    "I ordered a blue jacket.",
    "The package was delivered on Tuesday.",
    "Can I change my booking to next week?",
    "Please find my booking reference attached.",
    "We will be travelling with two children.",
]
# Complaints without an opinion word VADER knows: each must come out negative, never neutral.
COMPLAINTS = [
    "The car was not ready when you promised and nobody called me.",
    "I waited two hours and nobody came.",
    "The parcel never arrived.",
    "You charged me twice.",
    "My order did not arrive.",
    "I am still waiting for my refund.",
]


@pytest.fixture(scope="module")
def fast() -> FastTriage:
    triage = load_triage("fast")
    assert isinstance(triage, FastTriage)
    return triage


def features(result: TriageResult, label: str) -> list[str]:
    return [reason.feature for reason in getattr(result.reasons, label)]


def test_comment_spam_is_spam_and_says_which_words(fast: FastTriage) -> None:
    result = fast.triage_one("Check out my channel!!! http://youtube.com/user/bestvideos subscribe please")
    assert result.spam
    assert result.spam_score > 0.9
    assert {"channel", "subscribe"} & set(features(result, "spam"))
    assert result.urgency == "low"
    assert result.model.startswith("fast ")


def test_a_broken_parcel_nobody_answers_for_is_negative_about_delivery_and_urgent(fast: FastTriage) -> None:
    result = fast.triage_one("The parcel arrived broken and nobody answers")
    assert not result.spam
    assert result.sentiment == "negative"
    assert result.sentiment_score < -0.5
    assert "broken" in features(result, "sentiment")
    assert result.topic == "delivery"
    assert "parcel" in features(result, "topic")
    assert result.urgency == "high"
    assert "nobody answers" in features(result, "urgency")


def test_praise_is_positive_and_names_its_words(fast: FastTriage) -> None:
    result = fast.triage_one("Lovely staff, quick delivery, thank you so much!")
    assert not result.spam
    assert result.sentiment == "positive"
    assert result.sentiment_score > 0.5
    assert "lovely" in features(result, "sentiment")
    assert result.urgency == "low"


def test_texts_without_opinion_are_mostly_neutral_and_never_negative(fast: FastTriage) -> None:
    # Never negative: a negative text opens a case. The rule trades these against opinionated sentences called
    # neutral (docs/benchmarks.md#triage); seven of the eight is what it was set to keep.
    results = fast.triage_many(NEUTRAL_TEXTS)
    labels = {text: (r.sentiment, r.sentiment_score) for text, r in zip(NEUTRAL_TEXTS, results, strict=True)}
    assert sum(r.sentiment == "neutral" for r in results) >= 7, labels
    assert all(r.sentiment != "negative" for r in results), labels


@pytest.mark.parametrize("text", COMPLAINTS)
def test_a_complaint_without_opinion_words_is_negative(fast: FastTriage, text: str) -> None:
    result = fast.triage_one(text)
    assert result.sentiment == "negative", (result.sentiment_score, result.reasons.sentiment)


def test_a_legal_threat_is_urgent(fast: FastTriage) -> None:
    result = fast.triage_one("If my refund is not here by Friday my lawyer will take this to court.")
    assert result.urgency == "high"
    assert "legal threat" in features(result, "urgency")
    assert result.topic == "billing"


def test_german_and_spanish_keywords_find_their_topic(fast: FastTriage) -> None:
    assert fast.triage_one("Die Rechnung ist falsch, bitte Erstattung").topic == "billing"
    assert fast.triage_one("El paquete no llegó, ¿dónde está mi envío?").topic == "delivery"


def test_an_oversized_text_is_truncated_with_a_marker_not_refused() -> None:
    triage = load_triage("fast", max_chars=200)
    long = "The parcel arrived broken. " * 1000
    result, short = triage.triage_many([long, "fine"])
    assert result.truncated
    assert not short.truncated
    assert result.sentiment == "negative"
    assert truncate("x" * 300, 200)[0].endswith(TRUNCATION_MARKER)
    assert len(truncate("x" * 300, 200)[0]) == 200


def test_an_empty_text_gets_labels_too(fast: FastTriage) -> None:
    result = fast.triage_one("")
    assert result.sentiment == "neutral"
    assert result.topic is None
    assert not result.spam


def test_a_batch_gives_what_one_at_a_time_gives(fast: FastTriage) -> None:
    texts = ["The parcel arrived broken", "WINNER! Call 09061701461 to claim your prize", "Thanks a lot", ""]
    assert fast.triage_many(texts) == [fast.triage_one(text) for text in texts]


def test_a_taxonomy_that_is_not_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text("topics:\n  delivery: [unclosed\n", encoding="utf-8")
    with pytest.raises(TaxonomyError) as caught:
        load_taxonomy(path)
    assert str(path) in str(caught.value)
    assert "not valid YAML" in str(caught.value)


def test_a_taxonomy_topic_without_keywords_names_the_field(tmp_path: Path) -> None:
    text = "topics:\n  delivery:\n    keywords: [parcel]\n  billing:\n    description: money\n"
    with pytest.raises(TaxonomyError) as caught:
        parse_taxonomy(text, tmp_path / "t.yaml")
    problem = caught.value.problems[0]
    assert problem.field == "topics.billing.keywords"
    assert problem.line == 5


def test_a_custom_taxonomy_is_used_and_a_bad_setting_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("topics:\n  parking:\n    keywords: [parking, car park*]\n", encoding="utf-8")
    triage = load_triage("fast", taxonomy_file=path)
    assert triage.triage_one("No parking spaces in the car park again").topic == "parking"
    with pytest.raises(ModelError, match="triage_model_dir"):
        load_triage("fast", model_dir=tmp_path / "missing")


def test_embeddings_without_the_extra_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numpy")
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("the embeddings extra is installed here")
    with pytest.raises(InvalidInput, match="TRIAGE_BACKEND"):
        load_settings(triage_backend="embeddings")
    with pytest.raises(ModelError, match="triage_backend"):
        load_triage("embeddings")


def test_the_embeddings_backend_reads_the_sentence_and_the_fast_model_and_says_so() -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        pytest.skip("the embeddings extra is not installed (docs/feedback.md#embeddings-installing-pytorchs-cpu-build)")
    triage = load_triage("embeddings")
    praise, complaint, fact = triage.triage_many(
        ["The staff were lovely and fixed it the same day.", *COMPLAINTS[:1], NEUTRAL_TEXTS[0]]
    )
    assert (praise.sentiment, complaint.sentiment, fact.sentiment) == ("positive", "negative", "neutral")
    assert praise.model.startswith("embeddings 3 (all-MiniLM-L6-v2)")
    names = [reason.feature for reason in complaint.reasons.sentiment]
    assert names[:3] == ["sentence embedding", "lexicon scores", "word and character n-grams"]
    assert complaint.sentiment_score < 0 < praise.sentiment_score


def test_corrections_change_labels_and_generalise_a_little() -> None:
    base = load_fast_models()
    triage = FastTriage(base, load_taxonomy())
    text = "The courier left the box with the neighbours"
    assert triage.triage_one(text).sentiment != "negative"
    corrections = [
        Correction(text, "sentiment", "negative"),
        Correction("Call me back about the sofa", "topic", "furniture"),
        Correction("My sofa cushions are the wrong shade", "topic", "furniture"),
        Correction("URGENT! Your account has been credited, click here", "spam", "not_spam"),
    ]
    trained = FastTriage(train_from_corrections(corrections, base), load_taxonomy())
    assert trained.triage_one(text).sentiment == "negative"
    assert trained.triage_one(text).reasons.sentiment[0].source == "correction"
    assert trained.triage_one("The new sofa looks wonderful").topic == "furniture"
    assert not trained.triage_one("URGENT! Your account has been credited, click here").spam
    assert "corrections" in trained.model


def test_amends_triage_train_writes_models_the_setting_loads(tmp_path: Path) -> None:
    corrections = tmp_path / "corrections.jsonl"
    text = "The courier left the box with the neighbours"
    lines = [
        {"text": text, "field": "sentiment", "label": "negative"},
        {"text": "Where is the sofa I bought?", "field": "topic", "label": "furniture"},
    ]
    corrections.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMENDS_")} | {
        "AMENDS_TRIAGE_MODEL_DIR": str(tmp_path / "models"),
        "COLUMNS": "200",
    }

    def amends(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "amends.cli", "triage", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    before = amends("check", text)  # triage_model_dir names a directory not there yet: refused, named
    assert before.returncode == 2
    assert "triage_model_dir" in before.stderr
    del env["AMENDS_TRIAGE_MODEL_DIR"]
    before = amends("check", text)
    assert before.returncode == 0, before.stderr
    assert "negative" not in before.stdout
    trained = amends("train", str(corrections), "--out", str(tmp_path / "models"))
    assert trained.returncode == 0, trained.stderr
    assert "Trained on 2 corrections" in trained.stdout
    env["AMENDS_TRIAGE_MODEL_DIR"] = str(tmp_path / "models")
    after = amends("check", text)
    assert after.returncode == 0, after.stderr
    assert "negative" in after.stdout
    assert "corrected by staff" in after.stdout
    corrections.write_text('{"text": "x", "field": "mood", "label": "bad"}\n', encoding="utf-8")
    refused = amends("train", str(corrections))
    assert refused.returncode == 2
    assert "corrections.jsonl:1.field" in refused.stderr


def test_a_bad_correction_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok", "field": "spam", "label": "spam"}\nnot json\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"c\.jsonl:2"):
        list(read_corrections(path))


def test_the_shipped_models_match_a_fresh_build_from_the_public_data(tmp_path: Path) -> None:
    if not (DATA / "sms-spam" / "SMSSpamCollection").is_file():
        reason = f"the public data is not at {DATA} (set AMENDS_SHARED_DATA)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason}; AMENDS_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(reason)
    from amends.feedback.triage import build_models

    build_models(DATA).save(tmp_path)
    for model in ("sentiment", "spam"):
        names = sorted(p.name for p in (SHIPPED_MODELS_DIR / model).iterdir())
        assert names == sorted(p.name for p in (tmp_path / model).iterdir())
        _match, mismatch, errors = filecmp.cmpfiles(SHIPPED_MODELS_DIR / model, tmp_path / model, names, shallow=False)
        assert not errors, f"{model}: {errors} could not be compared"
        for name in mismatch:
            # The weights are float32 sums; OpenBLAS picks its kernels by CPU, so another processor may round the
            # last bit otherwise. Anything more than rounding is a model that no longer matches its data.
            assert name.endswith(".npy"), f"{model}: {name} differs; run amends triage build-models"
            shipped, fresh = np.load(SHIPPED_MODELS_DIR / model / name), np.load(tmp_path / model / name)
            assert shipped.shape == fresh.shape, f"{model}: {name} differs in shape; run amends triage build-models"
            assert np.allclose(shipped, fresh, rtol=1e-5, atol=1e-6), f"{model}: {name} differs; rebuild"


def test_the_lexicon_score_reads_negations_boosters_but_and_emojis() -> None:
    from amends.feedback.triage._features import featurise, normalise
    from amends.feedback.triage.lexicon import lexicon_features

    texts = [
        "The staff were good.", "The staff were not good.", "The staff were very good.", "The staff were hardly good.",
        "Good food but awful service.", "Awful food but good service.", "I \U0001f620 this", "My order is 12345.", "",
        "Not that I mind, the staff were good.",
    ]  # fmt: skip
    score = {
        t: row[0] for t, row in zip(texts, lexicon_features(featurise([normalise(t) for t in texts])), strict=True)
    }
    good = score["The staff were good."]
    assert 0.35 < good < 1
    assert score["The staff were not good."] == pytest.approx(-good)
    assert score["The staff were hardly good."] < good < score["The staff were very good."]
    assert score["Good food but awful service."] < 0 < score["Awful food but good service."]  # after "but" counts
    assert score["I \U0001f620 this"] < 0  # the emoji's words ("angry face") carry VADER's valence
    assert score["My order is 12345."] == score[""] == 0.0
    assert score["Not that I mind, the staff were good."] == good  # a negation reaches three words, no further
    more = ["It was not cheap. Great service!", "Great service!", "not not good", "kind of slow", ":)", "<3"]
    more_scores = lexicon_features(featurise([normalise(t) for t in more]))[:, 0].tolist()
    assert more_scores[0] == more_scores[1]  # a negation stops at the end of its sentence
    assert more_scores[2] == pytest.approx(good)  # two negations cancel
    assert more_scores[3] == 0.0  # "kind of" is not kind
    assert min(more_scores[4:]) > 0  # emoticons as written


# Plain customer sentences about orders, bookings and invoices. The SMS promotions teach "order" and numbers; the
# review sentences as not spam, at the weight CV picks, keep these below the threshold (the highest two 0.22 and
# 0.36 against 0.5; docs/benchmarks.md#triage).
CUSTOMER_SENTENCES = [
    "My order number is 12345.",
    "Please send the invoice for order 5521 to my office.",
    "I booked a table for 4 at 7pm.",
    "My booking reference is AB1234.",
    "Invoice 2024-0042 is attached.",
    "I ordered a blue jacket.",
]


def test_plain_customer_sentences_about_orders_are_not_spam(fast: FastTriage) -> None:
    results = fast.triage_many(CUSTOMER_SENTENCES)
    assert [r.spam_score for r in results if r.spam] == []


_OFFLINE_TRIAGE = """
import socket, sys

def refuse(*args, **kwargs):
    raise OSError("network use during triage: " + repr(args))

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

from amends.feedback import load_triage

backend = sys.argv[1]
results = load_triage(backend).triage_many(["The parcel never arrived.", "Lovely staff, thank you!"])
print(backend, [r.sentiment for r in results])
"""


@pytest.mark.parametrize("backend", ["fast", "embeddings"])
def test_triage_loads_and_runs_with_the_network_refused(backend: str) -> None:
    # A fresh interpreter in which any connection or name lookup raises: the models, the lexicon and (for the
    # embeddings backend) the MiniLM weights must all come from the installed packages.
    if backend == "embeddings":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            pytest.skip("the embeddings extra is not installed")
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_TRIAGE, backend], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{backend} ['negative', 'positive']" in done.stdout


def test_an_embeddings_head_of_the_wrong_shape_is_refused_naming_the_file(tmp_path: Path) -> None:
    import shutil

    import numpy as np

    from amends.feedback.triage.embeddings import EMBEDDINGS_DIR, DenseHead

    shutil.copytree(EMBEDDINGS_DIR / "sentiment", tmp_path / "head")
    assert DenseHead.load(tmp_path / "head").weights.shape == (388,)
    np.save(tmp_path / "head" / "weights.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(ModelError, match=r"weights\.npy: expected 388 weights"):
        DenseHead.load(tmp_path / "head")


_KEYWORDS = ["fire", "explod*", "caught fire", "e-mail", "still waiting", "£5", "x_y", "flight attend*", "hasn't"]
_KEYWORD_PIECES = ["fire", "explod", "ing", "caught", " ", "-", "_", ".", "e", "mail", "still", "waiting", "£", "5"]
_KEYWORD_PIECES += ["x", "y", "flight", "attend", "hasn", "'", "t", "!", "ant"]


@settings(max_examples=500, deadline=None)
@given(
    groups=st.lists(st.lists(st.sampled_from(_KEYWORDS), min_size=1), min_size=1, max_size=3),
    texts=st.lists(st.lists(st.sampled_from(_KEYWORD_PIECES), max_size=10).map("".join), max_size=6),
)
def test_the_keyword_filter_never_skips_a_text_the_pattern_matches(groups: list[list[str]], texts: list[str]) -> None:
    # A text is searched only for the groups the filter picks from its words: it may pick too many, never too few.
    keywords = KeywordGroups.of({f"g{n}": group for n, group in enumerate(groups)})
    normal = [normalise(text) for text in texts]
    words = [[strip_word(piece) for piece in text.split(" ")] if text else [] for text in normal]
    picked = keywords.groups_to_search(words)
    for text, chosen in zip(normal, picked, strict=True):
        assert {name for name, pattern in keywords.patterns.items() if pattern.search(text)} <= chosen


def test_a_batch_finds_the_same_topics_and_urgency_as_each_text_alone(fast: FastTriage) -> None:
    texts = ["My delivery is still late, third time I write", "Nice", "The oven caught fire!", "refunds?", ""]
    alone = [fast.triage_one(text) for text in texts]
    assert fast.triage_many(texts) == alone
    assert [r.topic for r in alone[:2]] == ["delivery", None]
    assert [r.urgency for r in alone[2:4]] == ["high", "low"]
