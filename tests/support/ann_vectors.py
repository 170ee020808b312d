"""Seeded clustered unit vectors with exact answers, for index tests (no model needed)."""

from __future__ import annotations

import numpy as np

from lookalike.catalog.base import Product, ProductWrite


def clustered(n: int, dim: int = 64, *, seed: int = 0, clusters: int = 50) -> np.ndarray:
    """`n` L2-normalised vectors around `clusters` centres, with a shared direction (like
    CLIP embeddings: random pairs are correlated, neighbourhoods are dense)."""
    rng = np.random.default_rng(seed)
    shape = np.random.default_rng(12345)  # same centres for every seed: queries match data
    mean = shape.standard_normal(dim)
    centres = shape.standard_normal((clusters, dim)) / np.sqrt(dim)
    which = rng.integers(0, clusters, n)
    x = (
        mean / np.linalg.norm(mean)
        + centres[which]
        + 0.5 * rng.standard_normal((n, dim)) / np.sqrt(dim)
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top_k(ids: np.ndarray, base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact top-k inner products per query."""
    scores = queries @ base.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def catalog_writes(vectors: np.ndarray, model_id: str, *, start: int = 0) -> list[ProductWrite]:
    """One product per vector, ids `p{start}`, `p{start+1}`, ... in two categories."""
    return [
        ProductWrite(
            Product(
                id=f"p{start + i}",
                title=f"item {start + i}",
                category="even" if (start + i) % 2 == 0 else "odd",
                model_id=model_id,
            ),
            vector,
        )
        for i, vector in enumerate(vectors)
    ]
