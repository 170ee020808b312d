"""A saved index mapped read-only plus a private delta answers like a private copy through
any sequence of writes; folds write the delta into a new snapshot, one process at a time,
and never over an index further along the log; other processes map the new snapshot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog import Product, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.errors import IndexError_
from lookalike.files.lock import exclusive_lock
from lookalike.index import HnswIndex, IndexMeta, IvfPqIndex, open_index
from lookalike.index.faiss_index import FaissIndex, FlatIndex
from lookalike.index.mapped import FOLD_LOCK, MappedIndex
from lookalike.index.mapped_live import MappedLiveIndex
from lookalike.index.persist import snapshot_path

DIM = 16
FAMILIES = {"flat": FlatIndex, "hnsw": HnswIndex}


def unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def saved(directory: Path, family: type[FaissIndex], count: int) -> None:
    index = family(IndexMeta(family.kind, DIM, "m1", params={"ef_search": 400}), directory)
    index.add(np.arange(1, count + 1, dtype=np.int64), unit(count, 0))
    index.save()


def same_answers(mapped: MappedIndex, private: FaissIndex, queries: np.ndarray, k: int) -> None:
    assert len(mapped) == len(private)
    np.testing.assert_array_equal(mapped.ids(), private.ids())
    allowed = private.ids()[::3]
    for options in ({}, {"allowed_ids": allowed}):
        m_scores, m_ids = mapped.search(queries, k, **options)
        p_scores, p_ids = private.search(queries, k, **options)
        np.testing.assert_allclose(m_scores, p_scores, atol=1e-5)
        # Same scores; ids may differ only where two entries score alike.
        assert (m_ids == p_ids).mean() > 0.99


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_mapped_plus_delta_answers_like_a_private_copy(tmp_path: Path, kind: str):
    family = FAMILIES[kind]
    saved(tmp_path, family, 300)
    private = family.load(tmp_path)
    mapped = MappedIndex(family.load(tmp_path, mapped=True))
    assert mapped.base.mapped and not private.mapped
    rng = np.random.default_rng(7)
    queries = unit(20, 99)
    next_id = 301
    for step in range(12):
        # What replaying the log does: remove what changes, add the new vectors.
        live = private.ids()
        gone = rng.choice(live, size=15, replace=False)
        replaced = rng.choice(np.setdiff1d(live, gone), size=5, replace=False)
        fresh = np.arange(next_id, next_id + 10, dtype=np.int64)
        next_id += 10
        added = np.concatenate([replaced, fresh])
        vectors = unit(len(added), 100 + step)
        for index in (private, mapped):
            assert index.remove(np.union1d(gone, replaced)) == 20
            index.add(added, vectors)
        same_answers(mapped, private, queries, 10)

    mapped.meta.watermark = 12
    before = mapped.snapshot
    assert mapped.fold()
    assert mapped.snapshot == before + 1 and mapped.delta_size == 0 and mapped.base.mapped
    same_answers(mapped, private, queries, 10)
    reloaded = family.load(tmp_path)
    assert reloaded.meta.watermark == 12
    same_answers(mapped, reloaded, queries, 10)


def test_the_snapshot_is_mapped_from_its_file_and_read_only(tmp_path: Path):
    saved(tmp_path, FlatIndex, 50)
    mapped = FlatIndex.load(tmp_path, mapped=True)
    path = str(snapshot_path(tmp_path, mapped.meta.snapshot))
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert path in maps.read_text(), "the snapshot file is not memory-mapped"
    with pytest.raises(IndexError_, match="read-only"):
        mapped.add(np.array([99], dtype=np.int64), unit(1, 3))
    with pytest.raises(IndexError_, match="read-only"):
        mapped.remove(np.array([1], dtype=np.int64))


def test_one_process_folds_at_a_time(tmp_path: Path):
    saved(tmp_path, FlatIndex, 20)
    mapped = MappedIndex(FlatIndex.load(tmp_path, mapped=True))
    mapped.add(np.array([100], dtype=np.int64), unit(1, 5))
    with exclusive_lock(tmp_path / FOLD_LOCK):  # another process is folding
        assert not mapped.fold()
    assert mapped.snapshot == 1 and mapped.delta_size == 1
    assert mapped.fold() and mapped.snapshot == 2 and len(FlatIndex.load(tmp_path)) == 21


# --- processes sharing one data dir (each LiveIndex stands for one worker) -----------------
def settings(data_dir: Path, **values) -> Settings:
    values = {"index_type": "flat", "index_memory": "mapped", **values}
    return Settings(_env_file=None, data_dir=data_dir, **values)


def write(catalog: SQLiteCatalog, ids: range, seed: int) -> None:
    vectors = unit(len(ids), seed)
    catalog.upsert(
        [
            ProductWrite(Product(id=f"p{i}", model_id="m1"), v)
            for i, v in zip(ids, vectors, strict=True)
        ]
    )


def catalog_ids(catalog: SQLiteCatalog) -> np.ndarray:
    return np.sort(np.concatenate([ids for ids, _ in catalog.iter_embeddings()]))


@pytest.fixture
def catalog(tmp_path: Path):
    cat = SQLiteCatalog(tmp_path / "catalog.db")
    write(cat, range(100), seed=0)
    yield cat
    cat.close()


def test_workers_map_each_others_folds(tmp_path: Path, catalog: SQLiteCatalog):
    s = settings(tmp_path / "data")
    one, two = open_index(s, catalog, DIM, "m1"), open_index(s, catalog, DIM, "m1")
    assert isinstance(one, MappedLiveIndex) and isinstance(two, MappedLiveIndex)
    assert one.index.snapshot == two.index.snapshot == 1  # built once, mapped by both

    write(catalog, range(90, 130), seed=1)  # ten replaced, thirty new
    catalog.delete(["p0", "p1"])
    one.apply_writes()
    two.catch_up()
    for live in (one, two):
        assert live.index.delta_size > 0
        np.testing.assert_array_equal(live.index.ids(), catalog_ids(catalog))

    assert one.save(force=True) and one.index.snapshot == 2 and one.index.delta_size == 0
    two.catch_up()  # sees the new snapshot: maps it, drops its own delta
    assert two.index.snapshot == 2 and two.index.delta_size == 0
    np.testing.assert_array_equal(two.index.ids(), catalog_ids(catalog))


def test_a_delta_past_its_limit_is_folded(tmp_path: Path, catalog: SQLiteCatalog):
    live = open_index(settings(tmp_path / "data", index_delta_max=25), catalog, DIM, "m1")
    write(catalog, range(100, 110), seed=2)
    live.apply_writes()
    assert live.index.snapshot == 1 and live.index.delta_size == 10
    write(catalog, range(110, 130), seed=3)
    live.apply_writes()
    assert live.index.snapshot == 2 and live.index.delta_size == 0
    np.testing.assert_array_equal(live.index.ids(), catalog_ids(catalog))


def test_a_fold_behind_the_saved_index_is_dropped(tmp_path: Path, catalog: SQLiteCatalog):
    s = settings(tmp_path / "data")
    behind, ahead = open_index(s, catalog, DIM, "m1"), open_index(s, catalog, DIM, "m1")
    write(catalog, range(100, 110), seed=4)
    behind.catch_up()
    write(catalog, range(110, 120), seed=5)
    ahead.catch_up()
    assert ahead.index.fold()
    assert not behind.index.fold()  # would lose the ten entries only `ahead` has folded
    assert FlatIndex.load(s.data_dir / "index").meta.watermark == catalog.log_head()
    behind.catch_up()
    assert behind.index.snapshot == ahead.index.snapshot
    np.testing.assert_array_equal(behind.index.ids(), catalog_ids(catalog))


def test_an_outgrown_mapped_index_is_rebuilt_and_mapped(tmp_path: Path, catalog: SQLiteCatalog):
    s = settings(tmp_path / "data", index_type="auto", index_auto_hnsw_at=120)
    live = open_index(s, catalog, DIM, "m1")
    assert live.index.kind == "flat"
    write(catalog, range(100, 140), seed=6)
    live.catch_up()  # 140 vectors: HNSW now
    assert isinstance(live.index, MappedIndex) and live.index.kind == "hnsw"
    assert live.index.base.mapped and live.index.delta_size == 0
    np.testing.assert_array_equal(live.index.ids(), catalog_ids(catalog))


def test_an_ivfpq_snapshot_maps_its_lists_and_folds(tmp_path: Path):
    params = {"nlist": 16, "m": 4, "nbits": 6, "nprobe": 16, "rerank": 1}
    index = IvfPqIndex(IndexMeta("ivfpq", DIM, "m1", params=params), tmp_path)
    data = unit(2000, 0)
    index.train(data)
    index.add(np.arange(1, 2001, dtype=np.int64), data)
    index.save()
    private, mapped = IvfPqIndex.load(tmp_path), MappedIndex(IvfPqIndex.load(tmp_path, mapped=True))
    queries = unit(10, 5)
    same_answers(mapped, private, queries, 10)

    gone = np.arange(1, 2001, 7, dtype=np.int64)
    fresh = np.arange(5000, 5050, dtype=np.int64)
    for target in (private, mapped):
        target.remove(gone)
        target.add(fresh, unit(50, 6))
    assert len(mapped) == len(private) == 2000 - len(gone) + 50
    np.testing.assert_array_equal(mapped.ids(), private.ids())
    assert mapped.fold() and mapped.delta_size == 0 and mapped.base.mapped
    same_answers(mapped, private, queries, 10)  # both IVF-PQ again: the same codes
