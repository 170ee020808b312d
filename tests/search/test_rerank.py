"""Ranking: signal normalisation, the hand-weighted ranker (weights from settings with
per-request overrides), the ranker registry, and the pipeline reporting similarity, final
score and the features each hit was ranked on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookalike.catalog.base import Product
from lookalike.config import Settings
from lookalike.errors import InvalidInput
from lookalike.search import (
    HandWeightedRanker,
    QueryContext,
    RerankWeights,
    SearchHit,
    SearchPipeline,
    create_ranker,
)
from lookalike.search.ranking import FEATURES, SignalScales, ordered
from lookalike.search.ranking.features import signals
from tests.support.synthetic_catalog import brute_force, fill_catalog, flat_live_index, unit_vectors

NOW = 1_800_000_000.0
DAY = 86_400.0
SCALES = SignalScales(popularity_full=10_000, rating_max=5, freshness_half_life_days=30)


def product(created_at: float = NOW, **attributes) -> Product:
    return Product(id="x", attributes=attributes, created_at=created_at)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({}, [0, 0, 0, 1]),
        ({"popularity": 10_000, "rating": 5, "conversion": 1}, [1, 1, 1, 1]),
        ({"popularity": 10**9, "rating": 9, "conversion": 3.5}, [1, 1, 1, 1]),  # capped
        ({"popularity": -5, "rating": -1, "conversion": -0.2}, [0, 0, 0, 1]),
        ({"popularity": "lots", "rating": True, "conversion": None}, [0, 0, 0, 1]),
        ({"popularity": float("nan"), "rating": 2.5, "conversion": 0.25}, [0, 0.5, 0.25, 1]),
        ({"popularity": 99}, [math.log1p(99) / math.log1p(10_000), 0, 0, 1]),
    ],
)
def test_signals_map_attributes_to_unit_range(attributes, expected):
    values = signals([product(**attributes)], SCALES, NOW)
    assert values[0].tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("item", "freshness"),
    [
        (product(created_at=NOW - 30 * DAY), 0.5),
        (product(created_at=NOW - 60 * DAY), 0.25),
        (product(created_at=NOW + DAY), 1.0),  # clock skew: never above 1
        (product(created_at=0.0), 0.0),  # unknown entry time
        (product(published_at=NOW - 30 * DAY), 0.5),  # the attribute wins over created_at
        (product(created_at=0.0, published_at="2026-12-16"), 0.5 ** ((30 + 8 / 24) / 30)),
        (product(created_at=0.0, published_at="2026-12-16T08:00:00Z"), 0.5),
        (product(published_at="not a date", created_at=NOW - 30 * DAY), 0.5),
    ],
)
def test_freshness_halves_every_half_life(item, freshness):
    # NOW is 2027-01-15T08:00:00Z.
    value = signals([item], SCALES, NOW)[0, 3]
    assert value == pytest.approx(freshness)


def test_settings_weights_and_per_request_override():
    settings = Settings(rerank_popularity=0.1, rerank_rating=0.2, rerank_freshness=0.0)
    base = HandWeightedRanker.from_settings(settings)
    assert base.weights == RerankWeights(popularity=0.1, rating=0.2, conversion=0.0)
    override = HandWeightedRanker.from_settings(settings, {"rating": 0.0, "conversion": 0.5})
    assert override.weights == RerankWeights(popularity=0.1, rating=0.0, conversion=0.5)
    off = HandWeightedRanker.from_settings(settings, {"popularity": 0, "rating": 0})
    assert not off.reorders
    assert base.reorders and base.name == "hand"
    # Explicit weights mean the hand-weighted ranker, whatever the default is.
    assert create_ranker(settings, overrides={"rating": 0.3}).weights.rating == 0.3
    assert create_ranker(settings).weights == base.weights


def test_unknown_ranker_is_refused():
    with pytest.raises(InvalidInput, match="unknown ranker 'nope'"):
        create_ranker(Settings(), "nope")


def apply(ranker: HandWeightedRanker, hits: list[SearchHit], now: float) -> list[SearchHit]:
    return ordered(hits, ranker.rank(QueryContext("image"), hits, now))[0]


@pytest.mark.parametrize(
    "weights",
    [
        {"popularity": 1, "colour": 2},
        {"rating": float("inf")},
        {"rating": "high"},
        {"rating": True},
    ],
)
def test_bad_overrides_are_refused(weights):
    with pytest.raises(InvalidInput):
        HandWeightedRanker.from_settings(Settings(), weights)
    with pytest.raises(InvalidInput):
        create_ranker(Settings(), overrides=weights)


hit_lists = st.lists(
    st.tuples(
        st.floats(-1, 1),
        st.dictionaries(
            st.sampled_from(["popularity", "rating", "conversion"]),
            st.floats(-10, 20_000, allow_nan=False),
        ),
    ),
    max_size=30,
)
weight_values = st.floats(0, 1)


@given(hits=hit_lists, w=st.tuples(weight_values, weight_values, weight_values, weight_values))
def test_score_is_similarity_plus_bounded_bonus(hits, w):
    reranker = HandWeightedRanker(RerankWeights(*w), SCALES)
    given_hits = [
        SearchHit(Product(id=f"h{i}", attributes=a, created_at=NOW), s, s)
        for i, (s, a) in enumerate(hits)
    ]
    ranked = apply(reranker, given_hits, NOW)
    assert sorted(h.product.id for h in ranked) == sorted(h.product.id for h in given_hits)
    scores = [h.score for h in ranked]
    assert scores == sorted(scores, reverse=True)
    for hit in ranked:
        assert hit.similarity - 1e-9 <= hit.score <= hit.similarity + sum(w) + 1e-9


@given(hits=hit_lists)
def test_zero_weights_rank_by_similarity(hits):
    given_hits = [
        SearchHit(Product(id=f"h{i}", attributes=a), s, s) for i, (s, a) in enumerate(hits)
    ]
    ranked = apply(HandWeightedRanker(RerankWeights()), given_hits, NOW)
    assert [h.score for h in ranked] == [h.similarity for h in ranked]
    assert [h.similarity for h in ranked] == sorted((s for s, _ in hits), reverse=True)


def test_service_reranks_a_pool_and_reports_both_scores(tmp_path):
    rng = np.random.default_rng(2)
    vectors = unit_vectors(300, 16, rng)
    query = vectors[0]
    order = np.argsort(-(vectors @ query))
    # The 6th most similar item is the best rated; nothing else has a rating.
    star = int(order[5])
    products = [
        Product(id=f"r{i}", attributes={"rating": 5.0} if i == star else {}) for i in range(300)
    ]
    catalog, _ = fill_catalog(tmp_path / "catalog.db", products, vectors)
    service = SearchPipeline(catalog, flat_live_index(catalog, 16), Settings())
    reference = brute_force(products, vectors, query, 10)

    plain = service.by_vector(query, 10, rerank={"rating": 0, "popularity": 0, "freshness": 0})
    assert [h.product.id for h in plain.hits] == [i for i, _ in reference]
    assert all(h.score == h.similarity for h in plain.hits)

    gap = reference[0][1] - reference[5][1]
    boosted = service.by_vector(query, 10, rerank={"rating": gap + 0.01, "freshness": 0})
    assert boosted.hits[0].product.id == f"r{star}"
    top = boosted.hits[0]
    assert top.similarity == pytest.approx(reference[5][1], abs=1e-5)
    assert top.score == pytest.approx(top.similarity + gap + 0.01, abs=1e-6)
    # Everyone else keeps score == similarity, in similarity order.
    rest = boosted.hits[1:]
    assert all(h.score == h.similarity for h in rest)
    assert [h.similarity for h in rest] == sorted((h.similarity for h in rest), reverse=True)
    # The features each hit was ranked on come back with the page, row i for hit i.
    assert boosted.feature_names == FEATURES
    assert boosted.features.shape == (10, len(FEATURES))
    assert boosted.features[0, 0] == pytest.approx(top.similarity)
    assert boosted.features[0, FEATURES.index("rating")] == 1.0
    assert (boosted.features[1:, FEATURES.index("rating")] == 0).all()
    assert boosted.ranker.startswith("hand@")
    catalog.close()
