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
