"""Retrieval metrics over labelled queries and galleries (exact search with FAISS).

For a query with label y and its top-k results:
- P@k: fraction of the k results labelled y.
- AP@k: sum over ranks i <= k of P@i at each relevant rank, divided by min(k, number of
  relevant gallery items); mAP@k is its mean over queries.
- R@k (hit rate): 1 when any of the top k results is relevant (CLIP-style Recall@K).
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def knn(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    *,
    metric: Literal["ip", "l2"] = "ip",
    exclude_self: bool = False,
) -> np.ndarray:
    """Indices (Q, k) of the nearest gallery rows; with `exclude_self`, query i is gallery
    row i and never its own result."""
    import faiss

    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    index = (
        faiss.IndexFlatIP(gallery.shape[1])
        if metric == "ip"
        else faiss.IndexFlatL2(gallery.shape[1])
    )
    index.add(gallery)
    extra = 1 if exclude_self else 0
    take = min(k + extra, len(gallery))
    _, found = index.search(queries, take)
    if not exclude_self:
        return found[:, :k]
    # Drop each query's own row (ties may put it anywhere among equal scores).
    own = np.arange(len(queries))[:, None]
    rows = [row[row != i][:k] for row, i in zip(found, own[:, 0], strict=True)]
    return np.stack([np.pad(r, (0, k - len(r)), constant_values=-1) for r in rows])


def retrieved_labels(found: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(gallery_labels)[np.maximum(found, 0)]
    return np.where(found >= 0, labels, -1)


def precision_at_k(found_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    return (found_labels == np.asarray(query_labels)[:, None]).mean(axis=1)


def average_precision_at_k(
    found_labels: np.ndarray, query_labels: np.ndarray, relevant_counts: np.ndarray
) -> np.ndarray:
    relevant = found_labels == np.asarray(query_labels)[:, None]
    k = relevant.shape[1]
    precision_at_i = np.cumsum(relevant, axis=1) / np.arange(1, k + 1)
    denominator = np.maximum(np.minimum(np.asarray(relevant_counts), k), 1)
    return (precision_at_i * relevant).sum(axis=1) / denominator


def hit_at_k(found_labels: np.ndarray, query_labels: np.ndarray, k: int) -> np.ndarray:
    return (found_labels[:, :k] == np.asarray(query_labels)[:, None]).any(axis=1).astype(float)


def reciprocal_rank(found: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1 / rank of each query's target among its found rows (0 when it is not there)."""
    hit = found == np.asarray(targets)[:, None]
    ranks = np.argmax(hit, axis=1) + 1
    return np.where(hit.any(axis=1), 1.0 / ranks, 0.0)


def macro_mean(values: np.ndarray, labels: np.ndarray) -> float:
    """The mean over classes of each class's mean: every class weighs the same, however many
    queries it has (the measure for unbalanced catalogs)."""
    classes = np.unique(labels)
    return float(np.mean([values[labels == c].mean() for c in classes])) if len(classes) else 0.0


class RunningTopK:
    """Exact k nearest gallery rows of fixed queries, with the gallery fed in chunks: a
    60,000-image gallery of raw pixels never has to be in memory at once."""

    def __init__(self, queries: np.ndarray, k: int, metric: Literal["ip", "l2"] = "ip"):
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.k = k
        self.metric = metric
        sign = -np.inf if metric == "ip" else np.inf
        self.scores = np.full((len(queries), 0), sign, dtype=np.float32)
        self.indices = np.zeros((len(queries), 0), dtype=np.int64)

    def add(self, gallery: np.ndarray, offset: int) -> None:
        """Search the chunk `gallery`, whose first row is gallery row `offset`."""
        import faiss

        if not len(gallery) or not len(self.queries):
            return
        gallery = np.ascontiguousarray(gallery, dtype=np.float32)
        index = (
            faiss.IndexFlatIP(gallery.shape[1])
            if self.metric == "ip"
            else faiss.IndexFlatL2(gallery.shape[1])
        )
        index.add(gallery)
        scores, found = index.search(self.queries, min(self.k, len(gallery)))
        scores = np.concatenate([self.scores, scores], axis=1)
        found = np.concatenate([self.indices, found + offset], axis=1)
        # Stable sort: among equal scores the earlier gallery row stays first, as one search
        # over the whole gallery would order them.
        order = np.argsort(-scores if self.metric == "ip" else scores, axis=1, kind="stable")
        order = order[:, : self.k]
        self.scores = np.take_along_axis(scores, order, axis=1)
        self.indices = np.take_along_axis(found, order, axis=1)

    def found(self) -> np.ndarray:
        """(Q, k) gallery rows, -1 where the gallery had fewer than k rows."""
        missing = self.k - self.indices.shape[1]
        return np.pad(self.indices, ((0, 0), (0, missing)), constant_values=-1)
