"""Auto family choice, builds from the catalog, rebuilds as it grows, compaction, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.index.factory import index_directory, open_index
from lookalike.index.faiss_index import META_FILE, saved_kind
from lookalike.index.persist import read_meta, write_meta
from lookalike.index.planner import choose_kind, index_planner
from tests.support.ann_vectors import catalog_writes, clustered, exact_top_k, recall_at_k

DIM = 64
MODEL = "test-model"


def settings(tmp_path, **values) -> Settings:
    return Settings(data_dir=tmp_path, **values)


def open_catalog(tmp_path, vectors: np.ndarray) -> SQLiteCatalog:
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    catalog.upsert(catalog_writes(vectors, MODEL))
    return catalog


def live_ids(catalog: SQLiteCatalog) -> tuple[np.ndarray, np.ndarray]:
    ids, vectors = zip(*catalog.iter_embeddings(model_id=MODEL), strict=True)
    return np.concatenate(ids), np.concatenate(vectors)


def test_auto_picks_the_family_by_catalog_size(tmp_path):
    s = settings(tmp_path, index_auto_hnsw_at=1000, index_auto_ivfpq_at=20_000)
    assert [choose_kind(s, n) for n in (0, 999, 1000, 19_999, 20_000)] == [
        "flat",
        "flat",
        "hnsw",
        "hnsw",
        "ivfpq",
    ]
    # Shrinking a little keeps the bigger family; below half its threshold it steps down.
    assert choose_kind(s, 600, "hnsw") == "hnsw"
    assert choose_kind(s, 400, "hnsw") == "flat"
    assert choose_kind(s, 12_000, "ivfpq") == "ivfpq"
    assert choose_kind(s, 9_000, "ivfpq") == "hnsw"
    defaults = settings(tmp_path)
    assert defaults.index_type == "auto"
    assert [choose_kind(defaults, n) for n in (19_999, 20_000, 1_000_000)] == [
        "flat",
        "hnsw",
        "ivfpq",
    ]
    # Explicit families hold at any size, except IVF-PQ which cannot train on a few vectors.
    assert choose_kind(settings(tmp_path, index_type="hnsw"), 10) == "hnsw"
    assert choose_kind(settings(tmp_path, index_type="ivfpq"), 5_000) == "flat"
    assert choose_kind(settings(tmp_path, index_type="ivfpq"), 50_000) == "ivfpq"


def test_index_grows_from_flat_to_hnsw_and_reopens_without_rebuilding(tmp_path):
    s = settings(tmp_path, index_auto_hnsw_at=1000)
    catalog = open_catalog(tmp_path, clustered(600, DIM))
    live = open_index(s, catalog, DIM, MODEL)
    assert live.index.kind == "flat" and len(live.index) == 600
    catalog.upsert(catalog_writes(clustered(600, DIM, seed=2), MODEL, start=600))
    live.catch_up()
    assert live.index.kind == "hnsw" and len(live.index) == 1200
    assert saved_kind(index_directory(s)) == "hnsw"
    ids, vectors = live_ids(catalog)
    queries = clustered(50, DIM, seed=3)
    truth = exact_top_k(ids, vectors, queries, 20)
    assert recall_at_k(live.index.search(queries, 20)[1], truth) >= 0.95
    live.save(force=True)
    watermark = live.index.meta.watermark
    reopened = index_planner(s, catalog, DIM, MODEL).load()
    assert reopened is not None and reopened.kind == "hnsw"
    assert reopened.meta.watermark == watermark


def test_hnsw_is_compacted_when_tombstones_pile_up(tmp_path):
    s = settings(tmp_path, index_type="hnsw", index_compact_fraction=0.1)
    catalog = open_catalog(tmp_path, clustered(2000, DIM))
    live = open_index(s, catalog, DIM, MODEL)
    first = live.index
    catalog.delete([f"p{i}" for i in range(150)])
    live.catch_up()
    assert live.index is first and live.index.stale_fraction == pytest.approx(0.075)
    catalog.delete([f"p{i}" for i in range(150, 250)])
    live.catch_up()
    assert live.index is not first  # rebuilt from the catalog without the dead nodes
    assert live.index.stale_fraction == 0.0 and len(live.index) == 1750
    gone = set(range(1, 251))  # the deleted products' vector ids (log sequence numbers)
    queries = clustered(30, DIM, seed=1)
    assert not gone & set(live.index.search(queries, 100)[1].ravel().tolist())


def test_ivfpq_starts_exact_then_trains_on_the_catalog_once_big_enough(tmp_path):
    s = settings(tmp_path, index_type="ivfpq", ivfpq_nbits=6, ivfpq_m=8, ivfpq_nlist=32)
    catalog = open_catalog(tmp_path, clustered(9_000, DIM))
    live = open_index(s, catalog, DIM, MODEL)
    assert live.index.kind == "flat"  # 9,000 vectors are too few to train codebooks
    catalog.upsert(catalog_writes(clustered(1_000, DIM, seed=2), MODEL, start=9_000))
    live.catch_up()
    index = live.index
    assert index.kind == "ivfpq" and len(index) == 10_000
    assert index.meta.params["trained_on"] > 0 and index.meta.params["nlist"] == 32
    queries = clustered(50, DIM, seed=3)
    ids, vectors = live_ids(catalog)
    truth = exact_top_k(ids, vectors, queries, 100)
    _, found = index.search(queries, 100)
    assert recall_at_k(found, truth) >= 0.95  # re-ranked with the catalog's vectors
    # Deleted in the catalog and replayed: never returned.
    top = {int(i) for i in found[:, 0]}
    catalog.delete([p.id for p in catalog.by_vector_ids(sorted(top)).values()])
    live.catch_up()
    assert not top & set(index.search(queries, 100)[1].ravel().tolist())


def test_explicit_settings_override_stored_search_knobs(tmp_path):
    catalog = open_catalog(tmp_path, clustered(500, DIM))
    live = open_index(settings(tmp_path, index_type="hnsw"), catalog, DIM, MODEL)
    live.index.set_search_params(ef_search=300)
    live.index.save()
    stored = index_planner(settings(tmp_path, index_type="hnsw"), catalog, DIM, MODEL).load()
    assert stored is not None and stored.meta.params["ef_search"] == 300
    forced = settings(tmp_path, index_type="hnsw", hnsw_ef_search=40)
    overridden = index_planner(forced, catalog, DIM, MODEL).load()
    assert overridden is not None and overridden.meta.params["ef_search"] == 40


def test_replaying_changes_the_saved_index_already_holds_keeps_ids_unique(tmp_path):
    s = settings(tmp_path, index_type="hnsw")
    catalog = open_catalog(tmp_path, clustered(800, DIM))
    live = open_index(s, catalog, DIM, MODEL)
    old_watermark = live.index.meta.watermark
    catalog.upsert(catalog_writes(clustered(200, DIM, seed=5), MODEL, start=800))
    catalog.delete(["p0", "p1"])
    live.catch_up()
    live.save(force=True)
    # A crash after the index file was written but before its metadata: the log replays.
    meta_path = index_directory(s) / META_FILE
    meta = read_meta(meta_path)
    meta.watermark = old_watermark
    write_meta(meta_path, meta)
    again = open_index(s, catalog, DIM, MODEL)
    assert len(again.index) == 998
    _, found = again.index.search(clustered(20, DIM, seed=6), 200)
    for row in found:
        row = row[row >= 0]
        assert len(row) == len(set(row.tolist()))
        assert not {1, 2} & set(row.tolist())


def test_search_threads_apply_in_whichever_thread_searches(tmp_path):
    import threading

    import faiss

    catalog = open_catalog(tmp_path, clustered(300, DIM))
    live = open_index(settings(tmp_path, search_threads=1), catalog, DIM, MODEL)
    seen: list[int] = []

    def search() -> None:
        live.index.search(clustered(2, DIM, seed=9), 5)
        seen.append(faiss.omp_get_max_threads())  # OpenMP keeps the count per thread

    worker = threading.Thread(target=search)
    worker.start()
    worker.join()
    assert seen == [1]
