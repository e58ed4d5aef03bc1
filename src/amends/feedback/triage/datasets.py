"""The labelled public data the shipped models are trained on and the benchmark scores (docs/feedback.md): the
Sentiment Labelled Sentences, the SMS Spam Collection and the YouTube Spam Collection's Psy comments, all from the
UCI Machine Learning Repository under CC BY 4.0. They are read from a folder the user names; amends ships none of
them, only the models trained on them.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from amends.feedback.errors import ModelError

__all__ = ["LabelledSet", "checksums", "read_sentences", "read_sms", "read_youtube"]

SENTENCE_FILES = ("amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt")
SMS_FILE = "sms-spam/SMSSpamCollection"
YOUTUBE_FILE = "youtube-spam/Youtube01-Psy.csv"


@dataclass(frozen=True, slots=True)
class LabelledSet:
    """Texts and their labels (1 positive or spam, 0 negative or not spam), in file order."""

    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def subset(self, rows: Iterable[int]) -> LabelledSet:
        """The texts at `rows`, in that order."""
        chosen = list(rows)
        return LabelledSet(self.name, tuple(self.texts[i] for i in chosen), tuple(self.labels[i] for i in chosen))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(str(path), f"cannot be read: {exc}") from exc


def read_sentences(data: Path) -> LabelledSet:
    """The 3,000 review sentences (Amazon, IMDb, Yelp): `sentence<TAB>score` per line, split on "\\n" only (the
    IMDb file has U+0085 inside lines, which `str.splitlines` would break on)."""
    texts, labels = [], []
    for name in SENTENCE_FILES:
        path = data / "sentiment-sentences" / name
        for number, line in enumerate(_read(path).split("\n"), start=1):
            if not line.strip():
                continue
            text, tab, score = line.rpartition("\t")
            if not tab or score.strip() not in ("0", "1"):
                raise ModelError(f"{path}:{number}", "expected a sentence, a tab and 0 or 1")
            texts.append(text.strip())
            labels.append(int(score))
    return LabelledSet("sentences", tuple(texts), tuple(labels))


def read_sms(data: Path) -> LabelledSet:
    """The SMS Spam Collection: a header `Label<TAB>SMS`, then `ham` or `spam`, a tab and the message."""
    path = data / SMS_FILE
    texts, labels = [], []
    lines = _read(path).split("\n")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab or label not in ("ham", "spam"):
            raise ModelError(f"{path}:{number}", "expected ham or spam, a tab and the message")
        texts.append(text)
        labels.append(int(label == "spam"))
    return LabelledSet("sms", tuple(texts), tuple(labels))


def read_youtube(data: Path) -> LabelledSet:
    """The YouTube comments under one video: CSV with CONTENT and CLASS (1 spam, 0 not)."""
    path = data / YOUTUBE_FILE
    texts, labels = [], []
    for number, row in enumerate(csv.DictReader(io.StringIO(_read(path), newline="")), start=2):
        if row.get("CLASS") not in ("0", "1") or row.get("CONTENT") is None:
            raise ModelError(f"{path}:{number}", "expected CONTENT and CLASS 0 or 1")
        texts.append(row["CONTENT"])
        labels.append(int(row["CLASS"]))
    return LabelledSet("youtube", tuple(texts), tuple(labels))


def checksums(data: Path) -> dict[str, str]:
    """The SHA-256 of every file the models are trained on, by path under `data`: kept in each model's
    model.json, so a model says which data made it."""
    files = [f"sentiment-sentences/{name}" for name in SENTENCE_FILES] + [SMS_FILE, YOUTUBE_FILE]
    return {name: hashlib.sha256((data / name).read_bytes()).hexdigest() for name in files}
