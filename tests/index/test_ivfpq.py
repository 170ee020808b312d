"""IVF-PQ family: training, recall with and without exact re-ranking, deletes, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import IndexNotTrained
from lookalike.index import IndexMeta, IvfPqIndex
from lookalike.index.ivfpq import sub_quantizers
from tests.support.ann_vectors import clustered, exact_top_k, recall_at_k

DIM = 64
N = 6000
PARAMS = {"nlist": 64, "m": 8, "nbits": 8, "nprobe": 16, "rerank": 4}


class Store:
    """Stored float vectors by id, standing in for the catalog's."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.rows = dict(zip(ids.tolist(), vectors, strict=True))

    def __call__(self, ids: np.ndarray) -> dict[int, np.ndarray]:
        return {int(i): self.rows[int(i)] for i in ids if int(i) in self.rows}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.arange(1, N + 1, dtype=np.int64) * 3
    return ids, clustered(N, DIM), clustered(100, DIM, seed=1)


@pytest.fixture(scope="module")
def trained(data) -> bytes:
    """Train once (k-means is the slow part); tests start from copies."""
    import faiss

    _, vectors, _ = data
    index = IvfPqIndex(IndexMeta("ivfpq", DIM, params=dict(PARAMS)), None)
    index.train(vectors[:3000])
    return faiss.serialize_index(index._index).tobytes()


def fresh(data, trained: bytes, tmp_path=None, **params) -> IvfPqIndex:
    import faiss

    ids, vectors, _ = data
    raw = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    meta = IndexMeta("ivfpq", DIM, params={**PARAMS, **params})
    index = IvfPqIndex(meta, tmp_path, raw, vectors=Store(ids, vectors))
    index.add(ids, vectors)
    return index


def test_adding_before_training_is_a_typed_error(data):
    ids, vectors, _ = data
    index = IvfPqIndex(IndexMeta("ivfpq", DIM, params=dict(PARAMS)), None)
    with pytest.raises(IndexNotTrained):
        index.add(ids[:10], vectors[:10])
    with pytest.raises(IndexNotTrained):
        index.train(vectors[:100])  # fewer than 2^nbits vectors


def test_rerank_meets_the_target_and_beats_raw_pq(data, trained):
    ids, vectors, queries = data
    index = fresh(data, trained)
    truth = exact_top_k(ids, vectors, queries, 100)
    scores, found = index.search(queries, 100)
    reranked = recall_at_k(found, truth)
    assert reranked >= 0.95
    # Re-ranked scores are exact inner products, best first.
    lookup = Store(ids, vectors)
    row = found[0][found[0] >= 0]
    np.testing.assert_allclose(
        scores[0, : len(row)], [lookup.rows[i] @ queries[0] for i in row], atol=1e-5
    )
    assert np.all(np.diff(scores[0, : len(row)]) <= 1e-7)
    # The same index without re-ranking (PQ distances only) is measurably worse.
    index.vectors = None
    raw_scores, raw = index.search(queries, 100)
    assert recall_at_k(raw, truth) < reranked
    # Without re-ranking, scores are the PQ estimate of the inner product.
    estimate = np.array([lookup.rows[i] @ queries[0] for i in raw[0][:10]])
    np.testing.assert_allclose(raw_scores[0, :10], estimate, atol=0.1)


def test_removed_ids_are_never_returned(data, trained):
    ids, vectors, queries = data
    index = fresh(data, trained)
    gone = np.unique(exact_top_k(ids, vectors, queries, 10))
    assert index.remove(gone) == len(gone)
    assert len(index) == N - len(gone)
    for allowed in (None, ids[::2], ids[::500]):  # unfiltered, filtered, tiny
        _, found = index.search(queries, 50, allowed_ids=allowed)
        assert not np.isin(found, gone).any()
        if allowed is not None:
            assert np.isin(found[found >= 0], allowed).all()
    # Re-added: live again.
    rows = np.flatnonzero(np.isin(ids, gone[:3]))
    index.add(ids[rows], vectors[rows])
    assert np.isin(gone[:3], index.search(vectors[rows], 1)[1]).all()


def test_rows_deleted_from_the_store_drop_out_of_reranked_results(data, trained):
    _, _, queries = data
    index = fresh(data, trained)
    top = int(index.search(queries[:1], 1)[1][0, 0])
    del index.vectors.rows[top]  # deleted in the catalog, not yet replayed into the index
    assert top not in index.search(queries[:1], 10)[1]


def test_small_filters_widen_the_scan_to_every_cell(data, trained):
    ids, vectors, queries = data
    index = fresh(data, trained, nprobe=1)  # one cell: a filtered scan of it would miss most
    allowed = ids[::300]
    keep = np.isin(ids, allowed)
    truth = exact_top_k(ids[keep], vectors[keep], queries, 5)
    assert recall_at_k(index.search(queries, 5, allowed_ids=allowed)[1], truth) == 1.0


def test_save_load_round_trip(data, trained, tmp_path):
    ids, vectors, queries = data
    index = fresh(data, trained, tmp_path, nprobe=8)
    index.remove(ids[:50])
    before = index.search(queries, 20)
    index.save()
    loaded = IvfPqIndex.load(tmp_path, vectors=Store(ids, vectors))
    assert loaded.meta.params["nprobe"] == 8 and len(loaded) == N - 50
    after = loaded.search(queries, 20)
    np.testing.assert_array_equal(before[1], after[1])


def test_sub_quantizers_divide_the_dimension():
    assert sub_quantizers(512, 64) == 64
    assert sub_quantizers(32, 64) == 32
    assert sub_quantizers(48, 20) == 16
    assert IvfPqIndex.nlist_for(1_000_000) == 2048
    assert IvfPqIndex.nlist_for(10_000) == 250  # capped: k-means wants 40 points a cell
    assert IvfPqIndex.nlist_for(100) == 2
