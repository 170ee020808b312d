"""Retrieval metrics: the chunked exact search against one search over the whole gallery
(seeded synthetic vectors, exact ground truth), reciprocal rank and macro averages."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.train.metrics import RunningTopK, knn, macro_mean, reciprocal_rank


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("chunk", [1, 7, 64, 500])
def test_a_gallery_fed_in_chunks_finds_what_one_search_finds(metric: str, chunk: int):
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(300, 16)).astype(np.float32)
    queries = rng.normal(size=(40, 16)).astype(np.float32)
    if metric == "ip":
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    search = RunningTopK(queries, 10, metric)
    for start in range(0, len(gallery), chunk):
        search.add(gallery[start : start + chunk], start)
    assert search.found().tolist() == knn(queries, gallery, 10, metric=metric).tolist()


def test_a_gallery_smaller_than_k_pads_with_minus_one():
    search = RunningTopK(np.eye(3, dtype=np.float32), 5)
    search.add(np.eye(3, dtype=np.float32)[:2], 0)
    found = search.found()
    assert found.shape == (3, 5) and found[0, 0] == 0 and found[1, 0] == 1
    assert (found[:, 2:] == -1).all()


def test_reciprocal_rank_and_macro_mean():
    found = np.array([[3, 1, 2], [5, 6, 7], [9, 8, 4]])
    assert reciprocal_rank(found, np.array([1, 0, 9])).tolist() == [0.5, 0.0, 1.0]
    # Class 0 has three queries (mean 1/3), class 1 one (mean 1): macro 2/3, micro 1/2.
    values, labels = np.array([1.0, 0.0, 0.0, 1.0]), np.array([0, 0, 0, 1])
    assert macro_mean(values, labels) == pytest.approx(2 / 3)
