"""Filtered search against brute force: both strategies, both index kinds, and the
widening that keeps `limit` results whenever that many matching items exist."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.catalog.base import Product, ProductFilter
from lookalike.config import Settings
from lookalike.errors import InvalidInput
from lookalike.search import HandWeightedRanker, RerankWeights, SearchHit, SearchPipeline
from lookalike.search.candidates import (
    EXACT_SELECTOR_MAX_SHARE,
    CandidateFinder,
    FilterPolicy,
    Plan,
    merge_best,
)
from tests.support.synthetic_catalog import (
    assert_same_ranking,
    brute_force,
    fill_catalog,
    flat_live_index,
    hnsw_live_index,
    ivfpq_live_index,
    unit_vectors,
)

DIM = 32
SIMILARITY_ONLY = HandWeightedRanker(RerankWeights())
EXACT = Settings(filter_exact_max_items=10**9)  # every filter takes the exact path
# ANN + post-filter, even where the first k would cover the whole index (oversample 1
# keeps it below the index size for the 0.5% filter: 20 / 0.005 = 4000 of 8000).
ANN = Settings(filter_exact_max_items=0, filter_oversample=1.0)


# --- a catalog where one category is 0.5% of the items --------------------------------
RARE_N = 8_000


@pytest.fixture(scope="module")
def rare(tmp_path_factory):
    rng = np.random.default_rng(5)
    vectors = unit_vectors(RARE_N, DIM, rng)
    rare_rows = set(rng.choice(RARE_N, RARE_N // 200, replace=False).tolist())
    products = [
        Product(
            id=f"p{i}",
            category="rare" if i in rare_rows else f"c{i % 10}",
            brand=f"b{i % 7}",
            price=float(i % 100),
        )
        for i in range(RARE_N)
    ]
    catalog, _ = fill_catalog(tmp_path_factory.mktemp("rare") / "catalog.db", products, vectors)
    indexes = {"flat": flat_live_index(catalog, DIM), "hnsw": hnsw_live_index(catalog, DIM)}
    yield catalog, products, vectors, indexes
    catalog.close()


@pytest.mark.parametrize("index_kind", ["flat", "hnsw"])
def test_rare_category_top20_is_brute_force(rare, index_kind):
    catalog, products, vectors, indexes = rare
    service = SearchPipeline(catalog, indexes[index_kind], Settings())
    only_rare = ProductFilter(categories=("rare",))
    assert catalog.count_matching(only_rare) == RARE_N // 200  # 0.5%
    for query in unit_vectors(10, DIM, np.random.default_rng(11)):
        results = service.by_vector(query, 20, only_rare, rerank=SIMILARITY_ONLY)
        assert results.strategy == "exact"
        assert results.total_found == RARE_N // 200
        # Exact scoring of the subset, whichever index holds the vectors.
        assert_same_ranking(results.hits, brute_force(products, vectors, query, 20, only_rare))


@pytest.mark.parametrize("index_kind", ["flat", "hnsw"])
def test_rare_category_through_ann_still_fills_the_limit(rare, index_kind):
    """Forced through ANN + post-filter (the planner would not): widening reaches every
    rare item on the flat index; the HNSW index, whose search budget returns fewer ids
    than asked, falls back to exact scoring."""
    catalog, products, vectors, indexes = rare
    only_rare = ProductFilter(categories=("rare",))
    finder = CandidateFinder(
        catalog, indexes[index_kind].index, FilterPolicy(exact_max_items=0, oversample=0.1)
    )
    # A flat index post-filters only filters above EXACT_SELECTOR_MAX_SHARE (below it, it
    # scans the matching ids alone): the plan says so, to force the post-filter path.
    share = 0.5 if index_kind == "flat" else 0.005
    assert share > EXACT_SELECTOR_MAX_SHARE or index_kind != "flat"
    plan = Plan("ann", RARE_N // 200, share)
    for query in unit_vectors(10, DIM, np.random.default_rng(11)):
        found = finder.find(query, 20, only_rare, plan)
        assert len(found.ids) == 20
        assert {p.category for p in found.products.values()} == {"rare"}
        reference = brute_force(products, vectors, query, 20, only_rare)
        hits = [
            SearchHit(found.products[int(i)], float(s), float(s))
            for i, s in zip(found.ids, found.similarities, strict=True)
        ]
        assert_same_ranking(hits, reference)
        if index_kind == "flat":
            assert found.path == "ann" and found.largest_k > 400  # it had to widen
        else:
            assert found.path == "ann+exact"


def test_flat_index_scans_only_the_matching_ids_of_a_selective_filter(rare):
    """Below EXACT_SELECTOR_MAX_SHARE a flat index searches the matching ids alone (FAISS's
    ID selector): exact, full, and no widening."""
    catalog, products, vectors, indexes = rare
    only_rare = ProductFilter(categories=("rare",))
    finder = CandidateFinder(
        catalog, indexes["flat"].index, FilterPolicy(exact_max_items=0, oversample=0.1)
    )
    plan = Plan("ann", RARE_N // 200, 0.005)
    for query in unit_vectors(5, DIM, np.random.default_rng(12)):
        found = finder.find(query, 20, only_rare, plan)
        assert found.path == "ann" and len(found.ids) == 20
        hits = [
            SearchHit(found.products[int(i)], float(s), float(s))
            for i, s in zip(found.ids, found.similarities, strict=True)
        ]
        assert_same_ranking(hits, brute_force(products, vectors, query, 20, only_rare))


def test_ivfpq_filter_searches_only_matching_ids(rare):
    """IVF-PQ takes the filter into its scan (an id selector, more cells probed) instead of
    post-filtering: every hit matches, the limit is filled, recall against brute force
    stays at the unfiltered level, and the scores are the exact re-ranked similarities."""
    catalog, products, vectors, _ = rare
    live = ivfpq_live_index(catalog, DIM)
    service = SearchPipeline(catalog, live, ANN)
    category = ProductFilter(categories=("c3",))  # about 10% of the items
    recalls = []
    for query in unit_vectors(20, DIM, np.random.default_rng(12)):
        results = service.by_vector(query, 20, category, rerank=SIMILARITY_ONLY)
        assert results.strategy == "ann" and len(results.hits) == 20
        assert {hit.product.category for hit in results.hits} == {"c3"}
        reference = dict(brute_force(products, vectors, query, 20, category))
        found = {hit.product.id: hit.similarity for hit in results.hits}
        recalls.append(len(found.keys() & reference.keys()) / 20)
        for product_id in found.keys() & reference.keys():
            assert found[product_id] == pytest.approx(reference[product_id], abs=1e-5)
    assert np.mean(recalls) >= 0.9


def test_hnsw_broad_filter_keeps_the_limit(rare):
    """The approximate index with a small search budget still fills every result slot."""
    catalog, _, _, indexes = rare
    service = SearchPipeline(catalog, indexes["hnsw"], ANN)
    for category in ("c3", "rare"):
        only = ProductFilter(categories=(category,))
        for query in unit_vectors(5, DIM, np.random.default_rng(3)):
            results = service.by_vector(query, 50, only, rerank=SIMILARITY_ONLY)
            assert len(results.hits) == min(50, catalog.count_matching(only))
            assert {h.product.category for h in results.hits} == {category}
            sims = [h.similarity for h in results.hits]
            assert sims == sorted(sims, reverse=True)


# --- property: any filter, any strategy, several queries, against brute force ------------
SMALL_N = 600
CATEGORIES = ["shoes", "bags", "hats", "belts", "socks"]
BRANDS = ["acme", "zed", "nova", "kite"]
COLORS = ["red", "blue", "green"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    rng = np.random.default_rng(7)
    vectors = unit_vectors(SMALL_N, DIM, rng)
    products = []
    for i in range(SMALL_N):
        attributes: dict = {"size": int(rng.integers(0, 4))}
        if rng.random() < 0.8:
            attributes["color"] = COLORS[int(rng.integers(0, 3))]
        products.append(
            Product(
                id=f"s{i}",
                # Skewed: "socks" is rare, "shoes" common.
                category=CATEGORIES[min(int(rng.exponential(1.2)), 4)],
                brand=None if rng.random() < 0.1 else BRANDS[int(rng.integers(0, 4))],
                price=None if rng.random() < 0.05 else round(float(rng.uniform(1, 200)), 2),
                attributes=attributes,
            )
        )
    catalog, vector_ids = fill_catalog(
        tmp_path_factory.mktemp("small") / "catalog.db", products, vectors
    )
    live = flat_live_index(catalog, DIM)
    yield catalog, live, products, vectors, vector_ids
    catalog.close()


filters = st.builds(
    ProductFilter,
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True).map(tuple),
    brands=st.lists(st.sampled_from(BRANDS), max_size=2, unique=True).map(tuple),
    price_min=st.none() | st.floats(0, 150),
    price_max=st.none() | st.floats(20, 250),
    attributes=st.dictionaries(
        st.sampled_from(["color", "size"]),
        st.lists(st.sampled_from([*COLORS, 0, 1, 2]), min_size=1, max_size=2, unique=True).map(
            tuple
        ),
        max_size=1,
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    product_filter=filters,
    limit=st.integers(1, 40),
    n_queries=st.integers(1, 3),
    exclude_one=st.booleans(),
    policy=st.sampled_from(["auto", "exact", "ann"]),
    seed=st.integers(0, 2**16),
)
def test_filtered_search_is_brute_force(
    small, product_filter, limit, n_queries, exclude_one, policy, seed
):
    catalog, live, products, vectors, vector_ids = small
    rng = np.random.default_rng(seed)
    queries = unit_vectors(n_queries, DIM, rng)
    excluded = [int(rng.integers(0, SMALL_N))] if exclude_one else []
    chosen = {"auto": Settings(filter_exact_max_items=50), "exact": EXACT, "ann": ANN}[policy]
    service = SearchPipeline(catalog, live, chosen)
    results = service.by_vector(
        queries,
        limit,
        product_filter,
        exclude_vector_ids=[int(vector_ids[i]) for i in excluded],
        rerank=SIMILARITY_ONLY,
    )
    excluded_ids = [products[i].id for i in excluded]
    matching = sum(1 for p in products if product_filter.matches(p) and p.id not in excluded_ids)
    reference = brute_force(products, vectors, queries, limit, product_filter, excluded_ids)
    assert len(results.hits) == min(limit, matching)
    assert results.total_found == matching
    assert all(product_filter.matches(h.product) for h in results.hits)
    assert_same_ranking(results.hits, reference)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    product_filter=filters,
    wanted=st.integers(1, 60),
    n_queries=st.integers(1, 3),
    post_filter=st.sampled_from(["rows", "ids"]),
    seed=st.integers(0, 2**16),
)
def test_ann_post_filter_on_rows_or_ids_is_brute_force(
    small, product_filter, wanted, n_queries, post_filter, seed
):
    """The ANN path post-filters on product rows (ProductFilter.matches) or on the
    catalog's matching id set; both widen k until every query has `wanted` matches."""
    catalog, live, products, vectors, _ = small
    queries = unit_vectors(n_queries, DIM, np.random.default_rng(seed))
    policy = FilterPolicy(
        exact_max_items=0, oversample=1.0, id_set_ratio=0.0 if post_filter == "rows" else 1e9
    )
    finder = CandidateFinder(catalog, live.index, policy)
    plan = Plan("ann", catalog.count_matching(product_filter), 0.5)
    found = finder.find(queries, wanted, product_filter, plan)
    reference = brute_force(products, vectors, queries, wanted, product_filter)
    hits = [
        SearchHit(found.products[int(i)], float(s), float(s))
        for i, s in zip(found.ids, found.similarities, strict=True)
    ]
    assert_same_ranking(hits, reference)
    if len(reference) < wanted:
        assert found.complete


def test_unfiltered_search_skips_rows_deleted_since_the_index_saw_them(small, tmp_path):
    _, _, products, vectors, _ = small
    # A private copy: this test deletes products.
    copy, _ = fill_catalog(
        tmp_path / "copy.db",
        [Product(p.id, category=p.category, brand=p.brand, price=p.price) for p in products],
        vectors,
    )
    live = flat_live_index(copy, DIM)
    service = SearchPipeline(copy, live, Settings())
    query = vectors[0]
    before = service.by_vector(query, 10, rerank=SIMILARITY_ONLY)
    gone = [h.product.id for h in before.hits[:6]]
    copy.delete(gone)  # the index has not caught up
    for product_filter in (None, ProductFilter(categories=tuple(CATEGORIES))):
        after = service.by_vector(query, 10, product_filter, rerank=SIMILARITY_ONLY)
        assert len(after.hits) == 10
        assert not {h.product.id for h in after.hits} & set(gone)
        kept = [(p, v) for p, v in zip(products, vectors, strict=True) if p.id not in gone]
        reference = brute_force([p for p, _ in kept], np.stack([v for _, v in kept]), query, 10)
        assert_same_ranking(after.hits, reference)
    copy.close()


def test_empty_filter_and_empty_match(small):
    catalog, live, _, _, _ = small
    service = SearchPipeline(catalog, live, Settings())
    nothing = ProductFilter(categories=("no-such-category",))
    results = service.by_vector(np.ones(DIM, np.float32), 10, nothing)
    assert results.hits == [] and results.total_found == 0
    assert len(service.by_vector(np.ones(DIM, np.float32), 10, ProductFilter()).hits) == 10


def test_bad_query_vectors_are_refused(small):
    catalog, live, _, _, _ = small
    service = SearchPipeline(catalog, live, Settings())
    with pytest.raises(InvalidInput):
        service.by_vector(np.ones(DIM + 1, np.float32), 10)
    with pytest.raises(InvalidInput):
        service.by_vector(np.full(DIM, np.nan, np.float32), 10)
    with pytest.raises(InvalidInput):
        service.by_vector(np.ones(DIM, np.float32), 0)


def test_merge_best_keeps_each_ids_best_score():
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, -np.inf]], dtype=np.float32)
    ids = np.array([[1, 2, 3], [2, 4, -1]], dtype=np.int64)
    merged_ids, merged_scores = merge_best(scores, ids)
    assert merged_ids.tolist() == [1, 2, 4, 3]
    assert merged_scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.1])
