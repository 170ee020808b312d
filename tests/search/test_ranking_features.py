"""The learned ranker's context features (`ranking_features`): how a hit relates to the
query and to the query's other hits, computed the same way for serving and training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lookalike.catalog.base import Product, ProductFilter
from lookalike.search import QueryContext, SearchHit
from lookalike.search.ranking import FEATURES, SignalScales, ranking_features
from lookalike.search.ranking.features import AGREEMENT_K

NOW = 1_800_000_000.0


def hit(i: int, similarity: float, **fields) -> SearchHit:
    return SearchHit(Product(id=f"p{i}", created_at=NOW, **fields), similarity, similarity)


def column(rows: np.ndarray, name: str) -> list[float]:
    return rows[:, FEATURES.index(name)].tolist()


def test_context_features():
    hits = [
        hit(0, 0.9, category="shoe", brand="a", price=50.0),
        hit(1, 0.8, category="shoe", brand="b", price=100.0),
        hit(2, 0.7, category="bag", brand="a", price=25.0),
        hit(3, 0.5, category=None, brand=None, price=None),
    ]
    context = QueryContext("text", ProductFilter(price_min=20.0, price_max=120.0))
    rows = ranking_features(context, hits, SignalScales(), NOW)
    assert rows.shape == (4, len(FEATURES))
    assert column(rows, "similarity") == pytest.approx([0.9, 0.8, 0.7, 0.5])
    assert column(rows, "similarity_gap") == pytest.approx([0.0, 0.1, 0.2, 0.4])
    assert column(rows, "price_log") == pytest.approx(
        [math.log1p(50), math.log1p(100), math.log1p(25), 0]
    )
    median = 50.0  # of the priced reference hits: 25, 50, 100
    assert column(rows, "price_vs_pool") == pytest.approx(
        [0.0, math.log(100 / median), math.log(25 / median), 0.0]
    )
    assert column(rows, "price_in_filter") == pytest.approx([0.3, 0.8, 0.05, -1.0])
    # Reference hits: all four (fewer than AGREEMENT_K); each compared with the others.
    assert column(rows, "category_agreement") == pytest.approx([1 / 3, 1 / 3, 0.0, 0.0])
    assert column(rows, "brand_agreement") == pytest.approx([1 / 3, 0.0, 1 / 3, 0.0])
    assert column(rows, "query_text") == [1.0] * 4
    assert column(rows, "query_image") == column(rows, "query_hybrid") == [0.0] * 4


def test_price_filter_with_one_bound_and_without():
    hits = [hit(0, 0.9, price=40.0), hit(1, 0.8, price=10.0)]
    low_only = ranking_features(
        QueryContext("image", ProductFilter(price_min=20.0)), hits, SignalScales(), NOW
    )
    assert column(low_only, "price_in_filter") == pytest.approx([0.5, 2.0])
    none = ranking_features(QueryContext("hybrid"), hits, SignalScales(), NOW)
    assert column(none, "price_in_filter") == [-1.0, -1.0]
    assert column(none, "query_hybrid") == [1.0, 1.0]


def test_agreement_looks_at_the_most_similar_hits_only():
    # AGREEMENT_K hits of "a" at the top, then many of "b": a "b" item far down agrees
    # with none of the reference hits, however many "b" items the pool holds.
    top = [hit(i, 0.9 - i * 0.01, category="a") for i in range(AGREEMENT_K)]
    rest = [hit(100 + i, 0.3, category="b") for i in range(50)]
    rows = ranking_features(QueryContext("image"), top + rest, SignalScales(), NOW)
    agreement = column(rows, "category_agreement")
    assert agreement[0] == pytest.approx(1.0) and agreement[-1] == 0.0
    assert ranking_features(QueryContext("image"), [], SignalScales(), NOW).shape == (
        0,
        len(FEATURES),
    )
