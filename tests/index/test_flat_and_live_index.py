"""FAISS flat index and the LiveIndex that keeps it in step with the catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog import Product, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.errors import IndexMismatch
from lookalike.index import FlatIndex, IndexMeta, LiveIndex
from lookalike.index.live import rebuild_from_catalog


def unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def flat(tmp_path: Path | None = None, dim: int = 16) -> FlatIndex:
    return FlatIndex(IndexMeta("flat", dim, "m1"), tmp_path)


def test_search_is_exact_inner_product():
    index, data = flat(), unit(200)
    ids = np.arange(1000, 1200, dtype=np.int64)
    index.add(ids, data)
    scores, found = index.search(data[:5], 10)
    truth = np.argsort(-(data[:5] @ data.T), axis=1)[:, :10] + 1000
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_remove_and_allowed_ids():
    index, data = flat(), unit(50)
    index.add(np.arange(50, dtype=np.int64), data)
    assert index.remove(np.array([0, 1, 999], dtype=np.int64)) == 2
    _, found = index.search(data[0], 50)
    assert 0 not in found and 1 not in found and len(index) == 48
    allowed = np.array([7, 9, 11], dtype=np.int64)
    _, found = index.search(data[0], 5, allowed_ids=allowed)
    assert set(found[0][found[0] >= 0]) == {7, 9, 11} and list(found[0][3:]) == [-1, -1]


def test_empty_index_and_empty_allowed_set_return_padding():
    index = flat()
    _scores, ids = index.search(unit(2), 3)
    assert ids.shape == (2, 3) and (ids == -1).all()
    index.add(np.arange(3, dtype=np.int64), unit(3))
    _, ids = index.search(unit(1), 3, allowed_ids=np.array([], dtype=np.int64))
    assert (ids == -1).all()


def test_wrong_shape_is_refused():
    with pytest.raises(IndexMismatch):
        flat().add(np.arange(2, dtype=np.int64), unit(2, dim=8))


def test_save_load_round_trip_leaves_no_temp_files(tmp_path: Path):
    index, data = flat(tmp_path), unit(30)
    index.add(np.arange(30, dtype=np.int64), data)
    index.meta.watermark = 42
    index.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lock",
        "index-00000001.faiss",
        "index.json",
    ]
    loaded = FlatIndex.load(tmp_path)
    assert len(loaded) == 30 and loaded.meta.watermark == 42 and loaded.meta.model_id == "m1"
    np.testing.assert_array_equal(loaded.search(data[:3], 5)[1], index.search(data[:3], 5)[1])


def test_corrupt_saved_index_is_a_mismatch(tmp_path: Path):
    index = flat(tmp_path)
    index.save()
    (tmp_path / "index-00000001.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexMismatch):
        FlatIndex.load(tmp_path)


@pytest.fixture
def catalog(tmp_path: Path):
    cat = SQLiteCatalog(tmp_path / "c.db")
    yield cat
    cat.close()


def write(catalog: SQLiteCatalog, ids: range, seed: int = 0) -> None:
    vectors = unit(len(ids), seed=seed)
    catalog.upsert(
        [
            ProductWrite(Product(id=f"p{i}", model_id="m1"), v)
            for i, v in zip(ids, vectors, strict=True)
        ]
    )


def index_ids(index: FlatIndex) -> set[int]:
    _, found = index.search(unit(1), max(len(index), 1))
    return set(found[0][found[0] >= 0].tolist())


def catalog_ids(catalog: SQLiteCatalog) -> set[int]:
    return {int(i) for ids, _ in catalog.iter_embeddings() for i in ids}


def test_catch_up_replays_adds_replacements_and_deletes(catalog: SQLiteCatalog):
    live = LiveIndex(flat(), catalog)
    write(catalog, range(20))
    assert live.catch_up() == 20
    write(catalog, range(5), seed=1)  # re-embed five
    catalog.delete(["p10", "p11"])
    live.catch_up()
    assert index_ids(live.index) == catalog_ids(catalog) and len(live.index) == 18


def test_replaying_from_an_old_watermark_is_idempotent(catalog: SQLiteCatalog, tmp_path: Path):
    """A crash after the index file landed but before its metadata did replays old entries."""
    live = LiveIndex(flat(tmp_path / "ix"), catalog)
    write(catalog, range(10))
    live.catch_up()
    write(catalog, range(3), seed=2)
    live.catch_up()
    live.index.meta.watermark = 0  # pretend the metadata is older than the index
    live.catch_up()
    assert len(live.index) == 10 and index_ids(live.index) == catalog_ids(catalog)


def test_rebuild_from_catalog_then_catch_up(catalog: SQLiteCatalog):
    write(catalog, range(12))
    index = rebuild_from_catalog(flat(), catalog)
    assert index.meta.watermark == catalog.log_head()
    catalog.delete(["p0"])
    live = LiveIndex(index, catalog)
    live.catch_up()
    assert index_ids(index) == catalog_ids(catalog) and len(index) == 11


def test_save_is_time_gated_unless_forced(catalog: SQLiteCatalog, tmp_path: Path):
    live = LiveIndex(flat(tmp_path / "ix"), catalog, save_interval_s=3600)
    write(catalog, range(3))
    live.catch_up()
    assert not live.save()
    assert live.save(force=True) and (tmp_path / "ix" / "index-00000001.faiss").exists()
    assert not live.save(force=True)  # nothing new


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_small_allowed_set_is_scored_exactly_through_writes(kind: str):
    """Small allowed sets are scored by gathering their vectors by node: exact, and still
    right after removes shift the flat index's nodes and HNSW leaves tombstones."""
    from lookalike.index import HnswIndex

    index = flat() if kind == "flat" else HnswIndex(IndexMeta("hnsw", 16), None)
    vectors = unit(2_000, seed=3)
    index.add(np.arange(2_000, dtype=np.int64) * 3, vectors)
    stored = dict(zip((np.arange(2_000) * 3).tolist(), vectors, strict=True))
    rng = np.random.default_rng(4)

    def check(allowed: np.ndarray, seed: int) -> None:
        queries = unit(3, seed=seed)
        scores, ids = index.search(queries, 10, allowed_ids=allowed)
        live = np.array([v for v in allowed.tolist() if v in stored])
        expected = queries @ np.stack([stored[v] for v in live.tolist()]).T
        for row in range(3):
            best = live[np.argsort(-expected[row], kind="stable")[:10]]
            assert set(ids[row].tolist()) == set(best.tolist())
            np.testing.assert_allclose(scores[row], np.sort(expected[row])[::-1][:10], rtol=1e-5)

    for step in range(3):
        # Allowed: live ids and some about to be removed; about 2% of the entries.
        allowed = np.unique(rng.choice(sorted(stored), 40))
        check(allowed, 20 + step)  # builds the id -> node lookup
        gone = np.unique(np.concatenate([allowed[:5], rng.choice(sorted(stored), 100)]))
        index.remove(gone)
        for vid in gone.tolist():
            del stored[vid]
        check(allowed, 30 + step)  # the removed ids are gone, the others found at new nodes
        fresh = np.arange(10, dtype=np.int64) + 10_000 + 100 * step
        new_vectors = unit(10, seed=10 + step)
        index.add(fresh, new_vectors)
        stored.update(zip(fresh.tolist(), new_vectors, strict=True))
        check(np.unique(np.concatenate([allowed, fresh])), 40 + step)
