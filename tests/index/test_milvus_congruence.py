"""Milvus vector index on embedded Milvus Lite, held to the FAISS path (congruence tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="needs lookalike[milvus]")
pytest.importorskip("milvus_lite", reason="needs lookalike[milvus]")

from lookalike.catalog import Product, ProductFilter, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.errors import ConfigError, IndexMismatch
from lookalike.index import FlatIndex, IndexMeta, LiveIndex, open_index
from lookalike.index.live import rebuild_from_catalog
from lookalike.index.milvus import (
    MilvusConfig,
    MilvusIndex,
    index_params,
    search_params_for,
)
from lookalike.index.milvus_filters import filter_expression
from tests.support.filter_products import FILTERS, tricky_products

DIM = 16
MODEL = "m1"
# ANN recall@10 against exact search that the default HNSW parameters must reach.
RECALL_TARGET = 0.95


def unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def settings_for(tmp_path: Path, **overrides) -> Settings:
    values = {
        "data_dir": tmp_path / "data",
        "index_url": str(tmp_path / "vectors.db"),
        "milvus_index_type": "FLAT",
        "filterable_attributes": ["color", "size"],
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def catalog(tmp_path: Path):
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    items = tricky_products(240, MODEL)
    vectors = unit(len(items), 0)
    catalog.upsert([ProductWrite(p, v) for p, v in zip(items, vectors, strict=True)])
    yield catalog
    catalog.close()


def faiss_live(catalog) -> LiveIndex:
    index = rebuild_from_catalog(FlatIndex(IndexMeta("flat", DIM, MODEL), None), catalog)
    return LiveIndex(index, catalog)


def test_exact_search_returns_the_same_top_k_as_faiss(tmp_path, catalog):
    milvus = open_index(settings_for(tmp_path), catalog, DIM, MODEL)
    faiss = faiss_live(catalog)
    queries = unit(20, 1)
    m_scores, m_ids = milvus.index.search(queries, 10)
    f_scores, f_ids = faiss.index.search(queries, 10)
    np.testing.assert_array_equal(m_ids, f_ids)  # random vectors: no ties
    np.testing.assert_allclose(m_scores, f_scores, atol=1e-5)
    assert len(milvus.index) == len(faiss.index) == 240


@pytest.mark.parametrize("product_filter", FILTERS, ids=repr)
def test_filtered_search_returns_the_items_of_the_faiss_exact_filtered_search(
    tmp_path, catalog, product_filter
):
    milvus = open_index(settings_for(tmp_path), catalog, DIM, MODEL).index
    faiss = faiss_live(catalog).index
    query = unit(1, 2)
    assert milvus.supports_filter(product_filter)
    allowed = catalog.filter_vector_ids(product_filter)
    _, f_ids = faiss.search(query, 300, allowed_ids=allowed)
    _, m_ids = milvus.search_filtered(query, 300, product_filter)
    expected = [int(i) for i in f_ids[0] if i >= 0]
    assert len(expected) == len(allowed) > 0 or product_filter == ProductFilter(price_max=0)
    assert [int(i) for i in m_ids[0] if i >= 0] == expected
    # The allowed-ids path (for filters Milvus cannot evaluate) agrees too.
    _, a_ids = milvus.search(query, 300, allowed_ids=allowed)
    assert [int(i) for i in a_ids[0] if i >= 0] == expected


def test_a_filter_on_an_attribute_not_stored_falls_back(tmp_path, catalog):
    milvus = open_index(settings_for(tmp_path, filterable_attributes=["size"]), catalog, DIM, MODEL)
    colour = ProductFilter(attributes={"color": ("a", 1)})
    assert not milvus.index.supports_filter(colour)
    assert milvus.index.supports_filter(ProductFilter(attributes={"color": ()}))
    _, ids = milvus.index.search_filtered(unit(1, 2), 300, colour)
    assert sorted(i for i in ids[0] if i >= 0) == catalog.filter_vector_ids(colour).tolist()


def test_filter_expression_escapes_text():
    expression = filter_expression(ProductFilter(categories=('a"b\\', "x")))
    assert expression == 'category in ["a\\"b\\\\", "x"]'
    assert filter_expression(ProductFilter()) == ""
    assert "not exists attrs" in filter_expression(ProductFilter(attributes={"c": (None,)}))


def test_hnsw_recall_reaches_the_target(tmp_path):
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    vectors = unit(3000, 3)
    catalog.upsert(
        [ProductWrite(Product(f"p{i}", model_id=MODEL), v) for i, v in enumerate(vectors)]
    )
    milvus = open_index(settings_for(tmp_path, milvus_index_type="HNSW"), catalog, DIM, MODEL).index
    exact = faiss_live(catalog).index
    queries = unit(100, 4)
    _, truth = exact.search(queries, 10)
    _, found = milvus.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= RECALL_TARGET
    catalog.close()


def test_writes_are_searchable_when_apply_writes_returns(tmp_path, catalog):
    live = open_index(settings_for(tmp_path), catalog, DIM, MODEL)
    probe = unit(1, 9)[0]
    # A new product whose vector is the query itself: first hit as soon as apply returns.
    new = Product("new", category="bags", price=99.0, model_id=MODEL)
    catalog.upsert([ProductWrite(new, probe)])
    live.apply_writes()
    new_vid = catalog.get("new").vector_id
    assert live.index.search(probe, 1)[1][0, 0] == new_vid
    # A metadata-only change moves it in and out of filters (no new vector id).
    in_range = ProductFilter(price_max=50)
    assert new_vid not in live.index.search_filtered(probe, 5, in_range)[1][0]
    catalog.upsert([ProductWrite(Product("new", category="bags", price=10.0, model_id=MODEL))])
    live.apply_writes()
    assert catalog.get("new").vector_id == new_vid
    assert live.index.search_filtered(probe, 5, in_range)[1][0, 0] == new_vid
    # A replaced vector: the old id is gone, the new one found.
    catalog.upsert([ProductWrite(Product("new", price=10.0, model_id=MODEL), -probe)])
    live.apply_writes()
    assert new_vid not in live.index.search(probe, 300)[1][0]
    assert live.index.search(-probe, 1)[1][0, 0] == catalog.get("new").vector_id
    # Deleted: gone.
    catalog.delete(["new", "p0"])
    live.apply_writes()
    assert len(live.index) == 239
    assert live.index.load_watermark() == catalog.log_head()


def test_writes_a_crashed_writer_committed_are_replayed_on_open(tmp_path, catalog):
    settings = settings_for(tmp_path)
    open_index(settings, catalog, DIM, MODEL)
    # Committed to the catalog, never written to Milvus (the writer died in between).
    catalog.upsert([ProductWrite(Product("late", category="shoes", model_id=MODEL), unit(1, 5)[0])])
    catalog.delete(["p1"])
    reopened = open_index(settings, catalog, DIM, MODEL)
    assert not reopened.index.created
    ids = reopened.index.search(unit(1, 5), 300)[1][0]
    assert catalog.get("late").vector_id in ids
    assert len(reopened.index) == 240  # one added, one deleted
    assert reopened.index.load_watermark() == catalog.log_head()


class InterleavingCatalog(SQLiteCatalog):
    """A real catalog where another writer commits and applies its own change at one
    chosen moment: right after the index has read a product and before it writes it."""

    interleave = None

    def by_vector_ids(self, vector_ids):
        found = super().by_vector_ids(vector_ids)
        if self.interleave is not None:
            other, self.interleave = self.interleave, None
            other()
        return found


def test_a_stale_concurrent_write_is_repaired(tmp_path):
    catalog = InterleavingCatalog(tmp_path / "catalog.db")
    catalog.upsert([ProductWrite(Product("p", price=1.0, model_id=MODEL), unit(1, 6)[0])])
    settings = settings_for(tmp_path)
    slow = open_index(settings, catalog, DIM, MODEL)
    other_catalog = SQLiteCatalog(tmp_path / "catalog.db")
    fast = open_index(settings, other_catalog, DIM, MODEL)
    catalog.upsert([ProductWrite(Product("p", price=2.0, model_id=MODEL))])

    def other_writer():
        other_catalog.upsert([ProductWrite(Product("p", price=3.0, model_id=MODEL))])
        fast.apply_writes()

    # The slow writer reads price 2, the other writer then writes price 3 and applies it,
    # then the slow writer writes its (older) row: reading the log again after writing,
    # it finds the newer entry and rewrites price 3.
    catalog.interleave = other_writer
    slow.apply_writes()
    vid = catalog.get("p").vector_id
    hits = slow.index.search_filtered(unit(1, 6), 5, ProductFilter(price_min=3, price_max=3))
    assert hits[1][0, 0] == vid
    other_catalog.close()
    catalog.close()


def test_collection_layout_changes_rebuild_and_foreign_collections_are_refused(tmp_path, catalog):
    settings = settings_for(tmp_path)
    first = open_index(settings, catalog, DIM, MODEL).index
    assert first.created
    # Another filterable attribute: the stored rows lack it, so the collection is rebuilt.
    wider = settings_for(tmp_path, filterable_attributes=["color", "size", "material"])
    rebuilt = open_index(wider, catalog, DIM, MODEL).index
    assert rebuilt.created and len(rebuilt) == 240
    # A catalog that did not build the collection must not adopt (or drop) it.
    stranger = SQLiteCatalog(tmp_path / "other.db")
    with pytest.raises(IndexMismatch, match="did not build it"):
        open_index(wider, stranger, DIM, MODEL)
    stranger.close()
    record = json.loads(catalog.get_meta("index:milvus:lookalike"))
    assert record["layout"]["filterable"] == ["color", "material", "size"]


def test_settings_that_cannot_work_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"ending in \.db"):
        MilvusConfig.from_settings(settings_for(tmp_path, index_url=str(tmp_path / "x.txt")))
    with pytest.raises(ConfigError, match="need a Milvus"):
        MilvusConfig.from_settings(settings_for(tmp_path, milvus_index_type="IVF_PQ"))
    server = MilvusConfig.from_settings(
        settings_for(tmp_path, index_url="http://milvus:19530", milvus_index_type="DISKANN")
    )
    assert not server.is_lite and server.index_type == "DISKANN"


def test_index_parameters_for_server_only_types():
    """IVF_PQ and DISKANN cannot be built by Milvus Lite; their parameters are checked here."""
    build, search = index_params("IVF_PQ", 512)
    assert build == {"nlist": 1024, "m": 64, "nbits": 8} and search == {"nprobe": 32}
    assert index_params("IVF_PQ", 100)[0]["m"] == 10  # the largest divisor <= dim / 8
    build, search = index_params("IVF_PQ", 512, {"m": 32, "nlist": 4096}, {"nprobe": 64})
    assert build["m"] == 32 and build["nlist"] == 4096 and search["nprobe"] == 64
    with pytest.raises(ConfigError, match="must divide"):
        index_params("IVF_PQ", 512, {"m": 30})
    assert index_params("DISKANN", 512) == ({}, {"search_list": 100})
    assert search_params_for("DISKANN", {"search_list": 100}, 500) == {"search_list": 500}
    assert search_params_for("HNSW", {"ef": 128}, 300) == {"ef": 300}
    assert search_params_for("HNSW", {"ef": 128}, 10) == {"ef": 128}
    assert index_params("HNSW", 512, {"M": 32}) == (
        {"M": 32, "efConstruction": 200},
        {"ef": 128},
    )
    with pytest.raises(ConfigError):
        index_params("ANNOY", 512)


def test_milvus_index_describes_itself(tmp_path, catalog):
    live = open_index(settings_for(tmp_path), catalog, DIM, MODEL)
    info = live.describe()
    assert info["type"] == "milvus" and info["vectors"] == 240
    assert info["params"]["index_type"] == "FLAT"
    assert isinstance(live.index, MilvusIndex)


def test_the_search_planner_pushes_broad_filters_down_and_the_catalog_has_the_last_word(
    tmp_path, catalog
):
    from lookalike.search.candidates import CandidateFinder, FilterPolicy

    live = open_index(settings_for(tmp_path), catalog, DIM, MODEL)
    faiss = faiss_live(catalog).index
    # Never exact by size, so a broad filter takes the index's own filtering.
    finder = CandidateFinder(catalog, live.index, FilterPolicy(exact_max_items=0, oversample=0.01))
    broad = ProductFilter(brands=("acme", "zed"), attributes={"size": (1, 2, 3, 4, 5, 6)})
    plan = finder.plan(broad, 10)
    assert plan.strategy == "pushdown"
    query = unit(1, 7)
    found = finder.find(query, 10, broad, plan)
    expected = faiss.search(query, 10, allowed_ids=catalog.filter_vector_ids(broad))[1][0]
    assert found.path == "pushdown" and found.ids.tolist() == expected.tolist()
    # A brand change committed but not yet written to Milvus: the stale hit is dropped.
    top = catalog.by_vector_ids([int(expected[0])])[int(expected[0])]
    catalog.upsert([ProductWrite(Product(top.id, brand="other", model_id=MODEL))])
    again = finder.find(query, 10, broad, finder.plan(broad, 10))
    assert top.vector_id not in again.ids.tolist() and len(again.ids) == 10
    assert again.ids.tolist()[:9] == expected[1:].tolist()
