"""Exact scores from stored float vectors for candidates found by a compressed index."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

VectorLookup = Callable[[np.ndarray], dict[int, np.ndarray]]

_QUERY_BLOCK = 64  # queries per gathered (block, candidates, dim) array: bounds memory


def exact_rerank(
    queries: np.ndarray, candidates: np.ndarray, lookup: VectorLookup, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score each query's candidate ids by exact inner product and keep the best k.

    Candidates whose vector the lookup no longer has (deleted since) are dropped.
    """
    wanted = np.unique(candidates[candidates >= 0])
    known, matrix = _matrix(lookup, wanted, queries.shape[1])
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
    if len(known):
        rows = np.searchsorted(known, candidates).clip(0, len(known) - 1)
        present = (candidates >= 0) & (known[rows] == candidates)
        for start in range(0, len(queries), _QUERY_BLOCK):
            block = slice(start, start + _QUERY_BLOCK)
            gathered = matrix[rows[block]]  # (b, c, dim)
            scores[block] = np.einsum("bcd,bd->bc", gathered, queries[block])
        scores[~present] = -np.inf
    return _top_k(scores, candidates, k)


def _matrix(lookup: VectorLookup, ids: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    found = lookup(ids) if len(ids) else {}
    known = np.fromiter(sorted(found), dtype=np.int64, count=len(found))
    if not len(known):
        return known, np.zeros((0, dim), dtype=np.float32)
    return known, np.stack([found[int(i)] for i in known]).astype(np.float32, copy=False)


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k per row (scores descending); missing places padded with -inf / -1."""
    rows = len(scores)
    out_scores = np.full((rows, k), -np.inf, dtype=np.float32)
    out_ids = np.full((rows, k), -1, dtype=np.int64)
    take = min(k, scores.shape[1])
    if take == 0:
        return out_scores, out_ids
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    best_scores = np.take_along_axis(scores, best, axis=1)
    best_ids = np.take_along_axis(np.asarray(ids), best, axis=1)
    found = np.isfinite(best_scores)
    out_scores[:, :take] = np.where(found, best_scores, -np.inf)
    out_ids[:, :take] = np.where(found, best_ids, -1)
    return out_scores, out_ids
