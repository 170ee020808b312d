"""Filtered search answered from the filter bitmaps: the same results as the catalog's SQL
path on every index kind that shares it, never a hit the catalog no longer matches, and
the catalog path for filters the bitmaps leave to it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.catalog.base import Product, ProductFilter, ProductWrite
from lookalike.config import Settings
from lookalike.index.factory import open_index
from lookalike.index.mapped_live import MappedLiveIndex
from lookalike.search import HandWeightedRanker, RerankWeights, SearchPipeline
from lookalike.search.candidates import CandidateFinder, FilterPolicy
from tests.support.synthetic_catalog import (
    MODEL_ID,
    assert_same_ranking,
    brute_force,
    fill_catalog,
    flat_live_index,
    hnsw_live_index,
    ivfpq_live_index,
    unit_vectors,
    with_filter_bitmaps,
)

DIM = 32
N = 3_000
SIMILARITY_ONLY = HandWeightedRanker(RerankWeights())
CATEGORIES = [f"c{i}" for i in range(10)]
COLORS = ["red", "blue", "green", "black"]


def _catalog_products(rng: np.random.Generator) -> list[Product]:
    # Category shares from 50% down to 0.1%; a price range cuts any of them.
    shares = np.array([0.5, 0.2, 0.1, 0.08, 0.05, 0.03, 0.02, 0.01, 0.005, 0.005])
    categories = rng.choice(10, N, p=shares / shares.sum())
    return [
        Product(
            id=f"p{i}",
            category=CATEGORIES[int(categories[i])],
            brand=None if rng.random() < 0.1 else f"b{int(rng.integers(0, 5))}",
            price=None if rng.random() < 0.05 else round(float(rng.uniform(1, 500)), 2),
            attributes={"color": COLORS[int(rng.integers(0, 4))], "size": int(rng.integers(0, 6))},
        )
        for i in range(N)
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    rng = np.random.default_rng(21)
    vectors = unit_vectors(N, DIM, rng)
    products = _catalog_products(rng)
    catalog, _ = fill_catalog(tmp_path_factory.mktemp("bitmaps") / "catalog.db", products, vectors)
    plain = {
        "flat": flat_live_index(catalog, DIM),
        "hnsw": hnsw_live_index(catalog, DIM),
        "ivfpq": ivfpq_live_index(catalog, DIM),
    }
    with_bitmaps = {
        "flat": with_filter_bitmaps(flat_live_index(catalog, DIM)),
        "hnsw": with_filter_bitmaps(hnsw_live_index(catalog, DIM)),
        "ivfpq": with_filter_bitmaps(ivfpq_live_index(catalog, DIM)),
    }
    yield catalog, products, vectors, plain, with_bitmaps
    catalog.close()


FILTERS = st.builds(
    ProductFilter,
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True).map(tuple),
    brands=st.lists(st.sampled_from(["b0", "b1", "b2", None]), max_size=2, unique=True).map(tuple),
    price_min=st.none() | st.floats(0, 400),
    price_max=st.none() | st.floats(50, 600),
    attributes=st.dictionaries(
        st.sampled_from(["color", "size"]),
        st.lists(st.sampled_from([*COLORS, 0, 1, 2, 3.0, True]), min_size=1, max_size=2).map(tuple),
        max_size=2,
    ),
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(product_filter=FILTERS, limit=st.integers(1, 40), n_queries=st.integers(1, 2))
def test_flat_search_from_the_bitmaps_is_the_catalog_paths_and_brute_force(
    world, product_filter, limit, n_queries
):
    catalog, products, vectors, plain, with_bitmaps = world
    queries = unit_vectors(n_queries, DIM, np.random.default_rng(limit))
    reference = brute_force(products, vectors, queries, limit, product_filter)
    matching = sum(1 for p in products if product_filter.matches(p))
    for live in (plain["flat"], with_bitmaps["flat"]):
        results = SearchPipeline(catalog, live, Settings()).by_vector(
            queries, limit, product_filter, rerank=SIMILARITY_ONLY
        )
        assert results.total_found == matching
        assert_same_ranking(results.hits, reference)


def _recall_at_20(service, products, vectors, queries, product_filter) -> float:
    """Mean recall@20 against brute force, checking every hit list on the way."""
    matching = sum(1 for p in products if product_filter.matches(p))
    recalls = []
    for query in queries:
        results = service.by_vector(query, 20, product_filter, rerank=SIMILARITY_ONLY)
        assert len(results.hits) == min(20, matching)
        assert results.total_found == matching
        assert all(product_filter.matches(h.product) for h in results.hits)
        reference = {pid for pid, _ in brute_force(products, vectors, query, 20, product_filter)}
        found = {h.product.id for h in results.hits}
        recalls.append(len(found & reference) / max(len(reference), 1))
    return float(np.mean(recalls))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_every_index_kind_answers_filters_from_the_bitmaps(world, kind):
    """Shares from 50% to 0.1%, alone and cut by a price range: every hit matches, the
    limit is filled, and recall@20 against brute force holds: 1.0 on the exact flat index
    and wherever HNSW scores a small subset exactly, and never below the catalog path's
    on the same index (same queries, same data)."""
    catalog, products, vectors, plain, with_bitmaps = world
    from_bitmaps = SearchPipeline(catalog, with_bitmaps[kind], Settings())
    from_catalog = SearchPipeline(catalog, plain[kind], Settings())
    queries = unit_vectors(10, DIM, np.random.default_rng(4))
    for category in CATEGORIES[:9]:
        for product_filter in (
            ProductFilter(categories=(category,)),
            ProductFilter(categories=(category,), price_min=100.0),
        ):
            recall = _recall_at_20(from_bitmaps, products, vectors, queries, product_filter)
            baseline = _recall_at_20(from_catalog, products, vectors, queries, product_filter)
            small = sum(1 for p in products if product_filter.matches(p)) <= 0.05 * N
            floor = 1.0 if kind == "flat" or (kind == "hnsw" and small) else 0.9
            assert recall >= floor, (kind, product_filter, recall)
            assert recall >= baseline - 0.02, (kind, product_filter, recall, baseline)


def test_the_bitmaps_spare_the_catalog_its_filter_queries(world, monkeypatch):
    """With the bitmaps, a filtered search asks the catalog only for the hits' rows."""
    catalog, products, vectors, _, with_bitmaps = world

    def refused(*_args, **_kwargs):
        raise AssertionError("the catalog was asked to evaluate a filter")

    monkeypatch.setattr(catalog, "filter_vector_ids", refused)
    monkeypatch.setattr(catalog, "count_matching", refused)
    service = SearchPipeline(catalog, with_bitmaps["flat"], Settings())
    product_filter = ProductFilter(categories=("c0", "c3"), price_max=250.0)
    results = service.by_vector(vectors[5], 20, product_filter, rerank=SIMILARITY_ONLY)
    assert_same_ranking(
        results.hits, brute_force(products, vectors, vectors[5], 20, product_filter)
    )


def test_a_filter_the_bitmaps_leave_out_asks_the_catalog(world):
    catalog, products, vectors, _, _ = world
    live = with_filter_bitmaps(flat_live_index(catalog, DIM), max_values=3)  # size has 6 values
    assert not live.filters.supports(ProductFilter(attributes={"size": (2,)}))
    asked = []
    count = catalog.count_matching

    class Counting(CandidateFinder):
        def _members(self, product_filter):
            asked.append(self._bitmap(product_filter) is None)
            return super()._members(product_filter)

    finder = Counting(catalog, live.index, FilterPolicy(), filters=live.filters)
    product_filter = ProductFilter(categories=("c1",), attributes={"size": (2,)})
    plan = finder.plan(product_filter, 20)
    assert plan.matching == count(product_filter)
    found = finder.find(vectors[7], 20, product_filter, plan)
    assert asked and all(asked)  # the catalog listed the ids
    reference = brute_force(products, vectors, vectors[7], 20, product_filter)
    assert [str(found.products[int(i)].id) for i in found.ids] == [pid for pid, _ in reference]


def test_a_change_not_yet_replayed_never_leaks_through(tmp_path):
    """The catalog moved a product out of the category; the index and bitmaps have not seen
    it yet: the hit is dropped, not returned under a filter it no longer matches."""
    rng = np.random.default_rng(8)
    vectors = unit_vectors(200, DIM, rng)
    products = [Product(id=f"p{i}", category="shoes" if i < 100 else "hats") for i in range(200)]
    catalog, _ = fill_catalog(tmp_path / "catalog.db", products, vectors)
    live = with_filter_bitmaps(flat_live_index(catalog, DIM))
    service = SearchPipeline(catalog, live, Settings())
    shoes = ProductFilter(categories=("shoes",))
    first = service.by_vector(vectors[3], 5, shoes, rerank=SIMILARITY_ONLY)
    moved = first.hits[0].product.id
    catalog.upsert([ProductWrite(Product(id=moved, category="hats", model_id=MODEL_ID))])
    again = service.by_vector(vectors[3], 5, shoes, rerank=SIMILARITY_ONLY)
    assert moved not in {h.product.id for h in again.hits}
    assert all(h.product.category == "shoes" for h in again.hits)
    live.catch_up()  # now the bitmaps know too
    assert live.filters.count(shoes) == 99
    catalog.close()


def test_each_mapped_worker_keeps_its_own_bitmaps_in_step(tmp_path):
    """Two workers over one mapped index: a write through one reaches both workers'
    bitmaps by their own replay of the log."""
    from lookalike.catalog.sqlite import SQLiteCatalog

    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    vectors = unit_vectors(120, DIM, np.random.default_rng(2))
    catalog.upsert(
        [
            ProductWrite(Product(id=f"p{i}", category=f"c{i % 3}", model_id=MODEL_ID), v)
            for i, v in enumerate(vectors)
        ]
    )
    s = Settings(
        _env_file=None, data_dir=tmp_path / "data", index_type="flat", index_memory="mapped"
    )
    one, two = open_index(s, catalog, DIM, MODEL_ID), open_index(s, catalog, DIM, MODEL_ID)
    assert isinstance(one, MappedLiveIndex) and isinstance(two, MappedLiveIndex)
    assert one.filters is not None and two.filters is not None and one.filters is not two.filters
    catalog.upsert([ProductWrite(Product(id="p0", category="c9", model_id=MODEL_ID))])
    catalog.delete(["p1"])
    one.apply_writes()
    assert one.save(force=True)  # a fold: the other maps the new snapshot, then replays
    two.catch_up()
    for live in (one, two):
        for product_filter in (
            ProductFilter(categories=("c9",)),
            ProductFilter(categories=("c1",)),
        ):
            assert live.filters.vector_ids(product_filter).tolist() == (
                catalog.filter_vector_ids(product_filter).tolist()
            )
    catalog.close()
