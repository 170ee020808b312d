"""HNSW family: recall against exact search, tombstone deletes, save/load, filters."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.index import FlatIndex, HnswIndex, IndexMeta
from tests.support.ann_vectors import clustered, exact_top_k, recall_at_k

DIM = 64
N = 5000


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.arange(1, N + 1, dtype=np.int64) * 7  # sparse ids, like a change log's
    return ids, clustered(N, DIM), clustered(100, DIM, seed=1)


@pytest.fixture(scope="module")
def built(data) -> HnswIndex:
    """One index for the tests that only read it."""
    return filled(data)


def filled(data, tmp_path=None, **params) -> HnswIndex:
    ids, vectors, _ = data
    index = HnswIndex(IndexMeta("hnsw", DIM, "m", params=params), tmp_path)
    index.add(ids, vectors)
    return index


def test_recall_meets_the_default_target(data, built):
    ids, vectors, queries = data
    index = built
    truth = exact_top_k(ids, vectors, queries, 100)
    scores, found = index.search(queries, 100)
    assert recall_at_k(found, truth) >= 0.95
    # Scores are exact inner products of the returned vectors.
    lookup = dict(zip(ids.tolist(), vectors, strict=True))
    expected = np.array(
        [[lookup[i] @ q for i in row] for row, q in zip(found[:5], queries[:5], strict=True)]
    )
    np.testing.assert_allclose(scores[:5], expected, atol=1e-5)


def test_batch_search_equals_one_query_at_a_time(data, built):
    _, _, queries = data
    index = built
    batch = index.search(queries[:10], 20)[1]
    single = np.vstack([index.search(q, 20)[1] for q in queries[:10]])
    np.testing.assert_array_equal(batch, single)


def test_removed_ids_are_never_returned(data):
    ids, vectors, queries = data
    index = filled(data)
    # Remove every query's 20 nearest neighbours: the graph keeps the nodes as tombstones.
    gone = np.unique(exact_top_k(ids, vectors, queries, 20))
    assert index.remove(gone) == len(gone)
    assert index.remove(gone) == 0  # absent now
    assert len(index) == N - len(gone)
    assert index.stale_fraction == pytest.approx(len(gone) / N)
    for allowed in (None, ids[::2], ids[::97]):  # unfiltered, filtered, tiny (exact path)
        _, found = index.search(queries, 50, allowed_ids=allowed)
        assert not np.isin(found, gone).any()
        if allowed is not None:
            assert np.isin(found[found >= 0], allowed).all()
    # What remains is still found well: recall against exact search over the survivors.
    keep = ~np.isin(ids, gone)
    truth = exact_top_k(ids[keep], vectors[keep], queries, 50)
    assert recall_at_k(index.search(queries, 50)[1], truth) >= 0.95


def test_removed_then_added_again_is_live(data):
    ids, vectors, queries = data
    index = filled(data)
    target = int(index.search(queries[:1], 1)[1][0, 0])
    row = int(np.flatnonzero(ids == target)[0])
    index.remove(np.array([target]))
    assert target not in index.search(queries[:1], 10)[1]
    # Same vector back (a change-log replay): the node is revived, the graph does not grow.
    index.add(np.array([target]), vectors[row : row + 1])
    assert index.search(queries[:1], 1)[1][0, 0] == target
    assert index.stale_fraction == 0.0 and len(index) == N
    # A different vector under the same id: the old node stays dead, the new one is live.
    index.remove(np.array([target]))
    index.add(np.array([target]), -vectors[row : row + 1])
    assert target not in index.search(queries[:1], 10)[1]
    scores, found = index.search(-vectors[row : row + 1], 1)
    assert found[0, 0] == target and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert len(index) == N


def test_save_load_round_trip_keeps_tombstones_and_params(data, tmp_path):
    ids, _, queries = data
    index = filled(data, tmp_path, ef_search=64)
    index.remove(ids[:100])
    index.meta.watermark = 42
    before = index.search(queries, 30)
    index.save()
    loaded = HnswIndex.load(tmp_path)
    assert loaded.meta.params["ef_search"] == 64 and loaded.meta.watermark == 42
    assert len(loaded) == N - 100
    after = loaded.search(queries, 30)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])
    assert not np.isin(after[1], ids[:100]).any()


def test_filtered_search_matches_exact_filtered_search(data, built):
    ids, vectors, queries = data
    index = built
    flat = FlatIndex(IndexMeta("flat", DIM), None)
    flat.add(ids, vectors)
    for allowed in (ids[::3], ids[::50]):  # graph walk with a filter; brute force subset
        truth = flat.search(queries, 20, allowed_ids=allowed)[1]
        keep = np.isin(ids, allowed)
        np.testing.assert_array_equal(truth, exact_top_k(ids[keep], vectors[keep], queries, 20))
        found = index.search(queries, 20, allowed_ids=allowed)[1]
        assert np.isin(found[found >= 0], allowed).all()
        assert recall_at_k(found, truth) >= 0.95


def test_more_results_than_vectors_are_padded():
    index = HnswIndex(IndexMeta("hnsw", 4), None)
    index.add(np.array([5, 6]), np.eye(4, dtype=np.float32)[:2])
    index.remove(np.array([6]))
    scores, found = index.search(np.eye(4, dtype=np.float32)[:1], 3)
    assert found.tolist() == [[5, -1, -1]]
    assert scores[0, 0] == pytest.approx(1.0)


def test_a_filter_whose_items_lie_far_from_the_query_still_fills_the_page():
    # Two far-apart clusters; the filter keeps the far one and a few near ones (61%: the
    # graph path). A walk from deep inside the near cluster never reaches the far one, so
    # it comes back short: the short rows are redone exactly.
    rng = np.random.default_rng(3)
    near = rng.normal(0, 0.05, (2_000, 32)) + np.eye(32)[0]
    far = rng.normal(0, 0.05, (3_000, 32)) + np.eye(32)[1]
    vectors = np.vstack([near, far]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(len(vectors))
    index = HnswIndex(IndexMeta("hnsw", 32, params={"m": 8, "ef_search": 16}), None)
    index.threads = 1
    index.add(ids, vectors)
    allowed = np.concatenate([ids[:50], ids[2_000:]])
    assert len(allowed) > 0.5 * len(ids)  # past the exact-subset share: the graph is walked
    queries = vectors[100:110]
    _, found = index.search(queries, 80, allowed_ids=allowed)
    truth = exact_top_k(allowed, vectors[allowed], queries, 80)
    assert (found >= 0).all() and np.isin(found, allowed).all()
    assert recall_at_k(found, truth) == 1.0
