"""Diversity: caps per category/brand, MMR, and a full result list when enough items exist."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookalike.catalog.base import Product, ProductFilter
from lookalike.config import Settings
from lookalike.errors import InvalidInput
from lookalike.search import (
    Diversity,
    HandWeightedRanker,
    RerankWeights,
    SearchHit,
    SearchPipeline,
    diversify,
)
from tests.support.synthetic_catalog import brute_force, fill_catalog, flat_live_index, unit_vectors

SIMILARITY_ONLY = HandWeightedRanker(RerankWeights())

hit_specs = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d", None]), st.sampled_from(["x", "y", None])),
    max_size=40,
)
caps = st.none() | st.integers(1, 3)


def make_hits(specs) -> list[SearchHit]:
    return [
        SearchHit(Product(id=f"h{i}", category=c, brand=b), 1.0 - i / 100, 1.0 - i / 100)
        for i, (c, b) in enumerate(specs)
    ]


def counts(hits, attribute) -> dict:
    out: dict = {}
    for hit in hits:
        value = getattr(hit.product, attribute)
        if value is not None:
            out[value] = out.get(value, 0) + 1
    return out


@given(specs=hit_specs, limit=st.integers(1, 20), per_category=caps, per_brand=caps)
def test_caps_hold_and_fill_greedily(specs, limit, per_category, per_brand):
    hits = make_hits(specs)
    chosen = diversify(hits, limit, Diversity(per_category, per_brand))
    by_category, by_brand = counts(chosen, "category"), counts(chosen, "brand")
    assert all(n <= (per_category or 10**9) for n in by_category.values())
    assert all(n <= (per_brand or 10**9) for n in by_brand.values())
    positions = [hits.index(h) for h in chosen]
    assert positions == sorted(positions)  # best first, order kept
    assert len(chosen) <= limit
    # Every skipped hit that was looked at breaks a cap: the list is as full as it can be.
    looked_at = hits if len(chosen) < limit else hits[: positions[-1] + 1]
    for hit in looked_at:
        if hit in chosen:
            continue
        category, brand = hit.product.category, hit.product.brand
        assert (
            per_category is not None
            and category is not None
            and by_category.get(category, 0) >= per_category
        ) or (per_brand is not None and brand is not None and by_brand.get(brand, 0) >= per_brand)


@given(
    specs=hit_specs,
    limit=st.integers(1, 20),
    per_category=caps,
    lam=st.floats(0, 1),
    seed=st.integers(0, 1000),
)
def test_mmr_honours_caps_and_reduces_to_ranking_at_lambda_one(
    specs, limit, per_category, lam, seed
):
    hits = make_hits(specs)
    embeddings = unit_vectors(len(hits), 8, np.random.default_rng(seed))
    chosen = diversify(hits, limit, Diversity(per_category, None, lam), embeddings)
    assert all(n <= (per_category or 10**9) for n in counts(chosen, "category").values())
    assert len({h.product.id for h in chosen}) == len(chosen)
    if per_category is None:
        assert len(chosen) == min(limit, len(hits))
    ranked = diversify(hits, limit, Diversity(per_category, None, 1.0), embeddings)
    assert ranked == diversify(hits, limit, Diversity(per_category, None, None))


def test_mmr_skips_a_near_duplicate():
    hits = make_hits([("a", None), ("a", None), ("b", None)])
    same, other = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    embeddings = np.stack([same, same, other])
    plain = diversify(hits, 3, Diversity(mmr_lambda=1.0), embeddings)
    assert [h.product.id for h in plain] == ["h0", "h1", "h2"]
    varied = diversify(hits, 3, Diversity(mmr_lambda=0.5), embeddings)
    assert [h.product.id for h in varied] == ["h0", "h2", "h1"]


@pytest.mark.parametrize(
    "diversity",
    [
        Diversity(max_per_category=0),
        Diversity(max_per_brand=-1),
        Diversity(max_per_category=1.5),
        Diversity(mmr_lambda=1.5),
        Diversity(mmr_lambda=-0.1),
    ],
)
def test_bad_diversity_is_refused(diversity):
    with pytest.raises(InvalidInput):
        diversity.validate()


# --- through the service: the pool widens until the caps can be filled -------------------
@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """The query's 200 nearest items are all in category "near"; 10 other categories
    (20 items each) lie further away, so a pool of limit x 4 holds one category only."""
    rng = np.random.default_rng(9)
    query = unit_vectors(1, 16, rng)[0]
    near = query + 0.3 * unit_vectors(200, 16, rng)
    far = unit_vectors(200, 16, rng) - 0.5 * query
    vectors = np.concatenate([near, far]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    products = [
        Product(
            id=f"n{i}" if i < 200 else f"f{i}",
            category="near" if i < 200 else f"cat{(i - 200) % 10}",
            brand=f"brand{i % 3}",
        )
        for i in range(400)
    ]
    catalog, _ = fill_catalog(tmp_path_factory.mktemp("crowded") / "catalog.db", products, vectors)
    yield catalog, flat_live_index(catalog, 16), products, vectors, query
    catalog.close()


@pytest.mark.parametrize("strategy", ["exact", "ann"])
def test_caps_still_fill_the_limit(crowded, strategy):
    catalog, live, products, vectors, query = crowded
    threshold = 10**6 if strategy == "exact" else 0
    service = SearchPipeline(catalog, live, Settings(filter_exact_max_items=threshold))
    a_filter = ProductFilter(brands=("brand0", "brand1", "brand2"))  # matches everything
    results = service.by_vector(
        query, 12, a_filter, rerank=SIMILARITY_ONLY, diversity=Diversity(max_per_category=2)
    )
    assert results.strategy == strategy
    assert len(results.hits) == 12
    assert max(counts(results.hits, "category").values()) == 2
    # The same as capping the full brute-force ranking.
    ranking = brute_force(products, vectors, query, len(products))
    by_id = {p.id: p for p in products}
    expected = diversify(
        [SearchHit(by_id[i], s, s) for i, s in ranking], 12, Diversity(max_per_category=2)
    )
    assert [h.product.id for h in results.hits] == [h.product.id for h in expected]


def test_caps_that_cannot_be_filled_return_what_exists(crowded):
    catalog, live, _, _, query = crowded
    service = SearchPipeline(catalog, live, Settings())
    results = service.by_vector(query, 20, diversity=Diversity(max_per_category=1))
    assert sorted(h.product.category for h in results.hits) == sorted(
        ["near", *(f"cat{i}" for i in range(10))]
    )
    brands = service.by_vector(query, 20, diversity=Diversity(max_per_brand=2))
    assert len(brands.hits) == 6


def test_mmr_through_the_service_uses_stored_embeddings(tmp_path):
    rng = np.random.default_rng(4)
    query = unit_vectors(1, 16, rng)[0]
    others = unit_vectors(50, 16, rng)
    twin = (query + 0.05 * others[0]) / np.linalg.norm(query + 0.05 * others[0])
    vectors = np.concatenate([[twin, twin], others]).astype(np.float32)
    products = [Product(id=f"m{i}") for i in range(len(vectors))]
    catalog, _ = fill_catalog(tmp_path / "catalog.db", products, vectors)
    service = SearchPipeline(catalog, flat_live_index(catalog, 16), Settings())
    plain = service.by_vector(query, 5, rerank=SIMILARITY_ONLY)
    assert {h.product.id for h in plain.hits[:2]} == {"m0", "m1"}
    varied = service.by_vector(
        query, 5, rerank=SIMILARITY_ONLY, diversity=Diversity(mmr_lambda=0.5)
    )
    assert len(varied.hits) == 5
    assert varied.hits[0].product.id in {"m0", "m1"}
    assert varied.hits[1].product.id not in {"m0", "m1"}  # the twin waits
    catalog.close()
