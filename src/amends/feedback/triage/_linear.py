"""A binary linear model over hashed TF-IDF n-grams (and a few dense features), stored as plain arrays.

A model is a directory: `model.json` (name, version, intercept, dense feature names, training recipe and data
checksums) and `.npy` arrays read with `allow_pickle=False` (the hashed columns kept, their idf, the weights).
Nothing is ever unpickled. Files are written byte for byte the same from the same inputs, so a fresh build can be
compared with the committed one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from amends.feedback.errors import ModelError
from amends.feedback.triage._features import CHAR_BLOCK, HASH_BITS, Batch

__all__ = ["Cells", "LinearModel", "Scored", "count_cells", "fit_linear", "vectorise"]

FloatArray = npt.NDArray[np.float64]
_ARRAYS = ("columns", "idf", "weights", "dense_weights")
_MASK = (1 << HASH_BITS) - 1


@dataclass(frozen=True, eq=False)
class LinearModel:
    """Weights over hashed n-gram columns plus dense features; `score` gives the log-odds of the positive class."""

    name: str
    version: str
    columns: npt.NDArray[np.int32]  # sorted hashed feature indices the model knows
    idf: npt.NDArray[np.float32]
    weights: npt.NDArray[np.float32]
    dense_names: tuple[str, ...]
    dense_weights: npt.NDArray[np.float32]
    intercept: float
    about: dict[str, Any] = field(default_factory=dict)  # recipe and provenance, kept in model.json
    threshold: float = 0.5  # the probability from which a text is the positive class (spam); chosen in training
    _lookup: npt.NDArray[np.int32] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lookup = np.full(1 << HASH_BITS, -1, dtype=np.int32)
        lookup[self.columns] = np.arange(len(self.columns), dtype=np.int32)
        object.__setattr__(self, "_lookup", lookup)

    def score(self, batch: Batch, dense: FloatArray, cells: Cells | None = None) -> Scored:
        """Log-odds per text, and the contribution of each piece of each text to it (`cells`: the batch's counted
        n-grams, if another model has counted them already)."""
        x = vectorise(batch, self._lookup, self.idf, cells)
        per_cell = x.values * self.weights[x.cols].astype(np.float64)
        # The sparse product without building a sparse matrix: each text's cells summed.
        logits = np.bincount(x.rows, weights=per_cell, minlength=len(batch.texts)) + self.intercept
        if self.dense_names:
            logits = logits + dense @ self.dense_weights.astype(np.float64)
        per_occurrence = per_cell[x.cell_of] / x.counts[x.cell_of]
        pieces = np.bincount(x.occurrence_piece, weights=per_occurrence, minlength=len(batch.pieces))
        return Scored(np.asarray(logits, dtype=np.float64), np.asarray(pieces, dtype=np.float64))

    def save(self, directory: Path) -> None:
        """Write the model's files into `directory` (created if need be), always byte for byte the same."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(directory / f"{name}.npy", getattr(self, name), allow_pickle=False)
        meta = {
            "name": self.name,
            "version": self.version,
            "intercept": float(self.intercept),
            "threshold": float(self.threshold),
            "dense_names": list(self.dense_names),
            "hash_bits": HASH_BITS,
            "about": self.about,
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> LinearModel:
        """Read a model written by `save`; ModelError names the file that is missing or wrong."""
        meta_file = directory / "model.json"
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            arrays = {name: np.load(directory / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
        except (OSError, ValueError) as exc:
            raise ModelError(str(directory), f"cannot read the model: {exc}") from exc
        if meta.get("hash_bits") != HASH_BITS:
            raise ModelError(
                str(meta_file), f"built for {meta.get('hash_bits')} hash bits, this amends uses {HASH_BITS}"
            )
        if not (len(arrays["columns"]) == len(arrays["idf"]) == len(arrays["weights"])):
            raise ModelError(str(directory), "columns.npy, idf.npy and weights.npy differ in length")
        if len(arrays["dense_weights"]) != len(meta["dense_names"]):
            raise ModelError(str(directory), "dense_weights.npy does not match dense_names in model.json")
        return cls(
            name=str(meta["name"]),
            version=str(meta["version"]),
            columns=arrays["columns"].astype(np.int32),
            idf=arrays["idf"].astype(np.float32),
            weights=arrays["weights"].astype(np.float32),
            dense_names=tuple(str(n) for n in meta["dense_names"]),
            dense_weights=arrays["dense_weights"].astype(np.float32),
            intercept=float(meta["intercept"]),
            about=dict(meta.get("about", {})),
            threshold=float(meta.get("threshold", 0.5)),
        )


@dataclass(frozen=True, slots=True)
class Scored:
    """What a linear model says of a batch: log-odds per text, contribution per piece (same order as the batch)."""

    logits: FloatArray
    piece_contributions: FloatArray


@dataclass(frozen=True, slots=True)
class _Vectors:
    shape: tuple[int, int]
    rows: npt.NDArray[np.int64]  # per (text, column) cell: its text, its column and its value
    values: FloatArray
    cols: npt.NDArray[np.int64]
    counts: FloatArray
    cell_of: npt.NDArray[np.int64]  # per kept occurrence: its cell
    occurrence_piece: npt.NDArray[np.int64]

    def matrix(self) -> sparse.csr_matrix:
        """The vectors as a sparse matrix, texts by columns (for training)."""
        return sparse.csr_matrix((self.values, (self.rows, self.cols)), shape=self.shape)


@dataclass(frozen=True, slots=True)
class Cells:
    """The distinct (text, hashed feature) pairs of a batch and how often each occurs: counted once per batch and
    shared by every model that scores it."""

    keys: npt.NDArray[np.int64]  # text << HASH_BITS | feature, ascending
    features: npt.NDArray[np.int64]  # keys & (2**HASH_BITS - 1): each cell's hashed feature
    counts: npt.NDArray[np.int64]
    cell_of: npt.NDArray[np.int64]  # per occurrence of the batch: its cell


def count_cells(batch: Batch) -> Cells:
    """Count the (text, feature) pairs of `batch`."""
    keys, cell_of, counts = np.unique(
        batch.rows * (1 << HASH_BITS) + batch.features, return_inverse=True, return_counts=True
    )
    return Cells(keys, keys & _MASK, counts, cell_of.ravel())


def vectorise(
    batch: Batch, lookup: npt.NDArray[np.int32], idf: npt.NDArray[np.float32], cells: Cells | None = None
) -> _Vectors:
    """Sublinear TF-IDF over the columns `lookup` maps hashed features to, L2-normalised per text and kind: the word
    n-grams to length one and the character n-grams to length one, so that the many character n-grams of a text do
    not drown its few words (as two scikit-learn vectorisers in a FeatureUnion would)."""
    cells = cells or count_cells(batch)
    n_texts, n_cols = len(batch.texts), len(idf)
    # `lookup` keeps the order of the features (a model's columns are sorted), so the kept cells stay in the
    # order a count over the model's own columns would give, and every sum below adds up in the same order.
    cols_all = lookup[cells.features].astype(np.int64)
    kept = cols_all >= 0
    cell_rows, cell_cols, counts = cells.keys[kept] >> HASH_BITS, cols_all[kept], cells.counts[kept]
    renumber = np.cumsum(kept) - 1
    occurrence_kept = kept[cells.cell_of]
    cell_of = renumber[cells.cell_of[occurrence_kept]]
    raw = (1.0 + np.log(counts)) * idf[cell_cols].astype(np.float64)
    block = cell_rows * 2 + (cells.features[kept] >= CHAR_BLOCK)
    norms = np.sqrt(np.bincount(block, weights=raw * raw, minlength=2 * n_texts))
    norms[norms == 0] = 1.0
    values = raw / norms[block]
    return _Vectors(
        (n_texts, n_cols), cell_rows, values, cell_cols, counts.astype(np.float64), cell_of,
        batch.piece_of[occurrence_kept],
    )  # fmt: skip


def fit_linear(
    name: str,
    version: str,
    batch: Batch,
    labels: Sequence[int],
    dense: FloatArray,
    dense_names: Sequence[str],
    *,
    c: float,
    min_df: int = 2,
    nb_weighting: bool = False,
    sample_weight: Sequence[float] | None = None,
    threshold: float = 0.5,
    about: dict[str, Any] | None = None,
) -> LinearModel:
    """Fit logistic regression (liblinear: deterministic) on hashed TF-IDF n-grams that occur in at least `min_df`
    texts, plus the dense features."""
    from sklearn.linear_model import LogisticRegression  # a second or so to import: only when training

    n_texts = len(batch.texts)
    cells = count_cells(batch)
    df = np.bincount(cells.features, minlength=1 << HASH_BITS)
    columns = np.flatnonzero(df >= min_df).astype(np.int32)
    idf = (np.log((1.0 + n_texts) / (1.0 + df[columns])) + 1.0).astype(np.float32)
    lookup = np.full(1 << HASH_BITS, -1, dtype=np.int32)
    lookup[columns] = np.arange(len(columns), dtype=np.int32)
    x = vectorise(batch, lookup, idf, cells).matrix()
    y = np.asarray(labels)
    ratio = np.ones(len(columns))
    if nb_weighting:
        # NB-weighted features (Wang and Manning 2012): each column scaled by its log-count ratio between the
        # classes. The scale folds into the stored weights, so scoring needs nothing extra.
        positive = 1.0 + np.asarray(x[y == 1].sum(axis=0)).ravel()
        negative = 1.0 + np.asarray(x[y != 1].sum(axis=0)).ravel()
        ratio = np.log((positive / positive.sum()) / (negative / negative.sum()))
        x = sparse.csr_matrix(x.multiply(ratio[np.newaxis, :]))
    if len(dense_names):
        x = sparse.hstack([x, sparse.csr_matrix(dense)], format="csr")
    classifier = LogisticRegression(C=c, solver="liblinear", max_iter=1000, random_state=0, tol=1e-6)
    classifier.fit(x, y, sample_weight=None if sample_weight is None else np.asarray(sample_weight))
    coef = classifier.coef_[0]
    return LinearModel(
        name=name,
        version=version,
        columns=columns,
        idf=idf,
        weights=(coef[: len(columns)] * ratio).astype(np.float32),
        dense_names=tuple(dense_names),
        dense_weights=coef[len(columns) :].astype(np.float32),
        intercept=_round(float(classifier.intercept_[0])),
        about=about or {},
        threshold=threshold,
    )


def _round(value: float) -> float:
    # JSON keeps the value exactly as repr gives it; rounding to float32 keeps it in step with the arrays.
    return float(np.float32(value)) if math.isfinite(value) else 0.0
