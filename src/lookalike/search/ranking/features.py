"""Per-candidate features, computed the same way for serving, logging and training: the one
definition every ranker, the search log and `lookalike train-ranker` share.

The business signals map a product (and its similarity to the query) to a number by a
fixed rule, so a product's value does not depend on which other products are in the pool:

* similarity — cosine similarity to the query.
* popularity — attribute `popularity` (views, sales: any count >= 0), log-scaled:
  `log1p(p) / log1p(popularity_full)`, capped at 1.
* rating — attribute `rating` divided by `rating_max` (5 stars by default).
* conversion — attribute `conversion`, a rate already in [0, 1].
* freshness — `0.5 ** (age_days / freshness_half_life_days)`, the age taken from
  attribute `published_at` (epoch seconds or an ISO-8601 date) when present, else from
  when the product entered the catalog (`created_at`).

A missing, non-numeric, non-finite or negative value gives 0; values past the top are
capped at 1.

The learned ranker sees more (`FEATURES`): how the candidate relates to the query and to
the query's other hits. "The reference hits" are the pool's `AGREEMENT_K` most similar
candidates (the item itself left out), so a value does not move with the pool's size once
the pool holds more than that:

* similarity_gap — best similarity in the pool minus this one (0 for the best).
* price_log — `log1p(price)`; 0 without a price.
* price_vs_pool — `log(price / median price of the reference hits)`, within [-3, 3]; 0
  without prices.
* price_in_filter — where the price sits in the query's price filter: `(price - low) /
  (high - low)` (low = price_min or 0), `price_min / price` with a lower bound only; -1
  without a price filter or a price.
* category_agreement, brand_agreement — share of the reference hits with the same
  category (brand); 0 when the item has none.
* query_image, query_text, query_hybrid — the query's kind, one-hot.

The position a hit was shown at is never a feature: it is logged beside them, for the
position-bias correction of training only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from lookalike.catalog.base import Product
from lookalike.config import Settings
from lookalike.search.request import QueryContext
from lookalike.search.results import SearchHit

SIGNALS = ("popularity", "rating", "conversion", "freshness")
BASE_FEATURES = ("similarity", *SIGNALS)
CONTEXT_FEATURES = (
    "similarity_gap",
    "price_log",
    "price_vs_pool",
    "price_in_filter",
    "category_agreement",
    "brand_agreement",
    "query_image",
    "query_text",
    "query_hybrid",
)
FEATURES = (*BASE_FEATURES, *CONTEXT_FEATURES)
AGREEMENT_K = 10  # reference hits: the pool's most similar candidates
_DAY_S = 86_400.0
_PRICE_RATIO_CAP = 3.0


@dataclass(frozen=True)
class SignalScales:
    """How raw attribute values map to [0, 1]."""

    popularity_full: float = 10_000.0
    rating_max: float = 5.0
    freshness_half_life_days: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SignalScales:
        return cls(
            popularity_full=settings.rerank_popularity_full,
            rating_max=settings.rerank_rating_max,
            freshness_half_life_days=settings.rerank_freshness_half_life_days,
        )


def signals(products: Sequence[Product], scales: SignalScales, now: float) -> np.ndarray:
    """(n, 4) matrix of business signals in [0, 1], columns in SIGNALS order."""
    out = np.zeros((len(products), len(SIGNALS)), dtype=np.float64)
    for row, product in enumerate(products):
        attrs = product.attributes
        out[row, 0] = _popularity(number(attrs.get("popularity")), scales)
        out[row, 1] = _unit(number(attrs.get("rating")), scales.rating_max)
        out[row, 2] = _unit(number(attrs.get("conversion")), 1.0)
        out[row, 3] = _freshness(_timestamp(product), now, scales)
    return out


def base_features(hits: Sequence[SearchHit], scales: SignalScales, now: float) -> np.ndarray:
    """(n, 5) matrix: similarity, then the signals (BASE_FEATURES order)."""
    similarity = np.array([h.similarity for h in hits], dtype=np.float64).reshape(-1, 1)
    return np.hstack([similarity, signals([h.product for h in hits], scales, now)])


def ranking_features(
    context: QueryContext, hits: Sequence[SearchHit], scales: SignalScales, now: float
) -> np.ndarray:
    """(n, len(FEATURES)) matrix, columns in FEATURES order: what every ranker computes,
    logs and (the learned one) scores on."""
    n = len(hits)
    out = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if not n:
        return out
    out[:, : len(BASE_FEATURES)] = base_features(hits, scales, now)
    similarity = out[:, 0]
    column = {name: len(BASE_FEATURES) + i for i, name in enumerate(CONTEXT_FEATURES)}
    out[:, column["similarity_gap"]] = similarity.max() - similarity
    reference = np.argsort(-similarity, kind="stable")[:AGREEMENT_K]
    prices = np.array([_price(h.product.price) for h in hits], dtype=np.float64)
    priced = ~np.isnan(prices)
    out[priced, column["price_log"]] = np.log1p(prices[priced])
    reference_prices = prices[reference][priced[reference]]
    if len(reference_prices) and priced.any():
        median = float(np.median(reference_prices))
        ratio = np.log(np.maximum(prices[priced], 1e-9) / max(median, 1e-9))
        out[priced, column["price_vs_pool"]] = np.clip(ratio, -_PRICE_RATIO_CAP, _PRICE_RATIO_CAP)
    out[:, column["price_in_filter"]] = _price_in_filter(prices, context)
    for name, attribute in (("category_agreement", "category"), ("brand_agreement", "brand")):
        values = [getattr(h.product, attribute) for h in hits]
        out[:, column[name]] = _agreement(values, reference)
    out[:, column[f"query_{context.kind}"]] = 1.0
    return out


def _price(value: Any) -> float:
    price = number(value)
    return math.nan if price is None or price < 0 else price


def _price_in_filter(prices: np.ndarray, context: QueryContext) -> np.ndarray:
    low, high = context.filters.price_min, context.filters.price_max
    out = np.full(len(prices), -1.0)
    priced = ~np.isnan(prices)
    if high is not None:
        low = low or 0.0
        span = high - low
        out[priced] = 1.0 if span <= 0 else (prices[priced] - low) / span
    elif low is not None:
        positive = priced & (prices > 0)
        out[positive] = low / prices[positive]
    return out


def _agreement(values: list[Any], reference: np.ndarray) -> np.ndarray:
    """Share of the reference hits (the item itself left out) whose value equals each
    item's; 0 for an item without one."""
    counts: dict[Any, int] = {}
    for row in reference.tolist():
        if values[row] is not None:
            counts[values[row]] = counts.get(values[row], 0) + 1
    in_reference = np.zeros(len(values), dtype=bool)
    in_reference[reference] = True
    out = np.zeros(len(values))
    for row, value in enumerate(values):
        others = len(reference) - int(in_reference[row])
        if value is None or others <= 0:
            continue
        out[row] = (counts.get(value, 0) - int(in_reference[row])) / others
    return out


def number(value: Any) -> float | None:
    """A finite number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _unit(value: float | None, top: float) -> float:
    if value is None or value <= 0:
        return 0.0
    return min(value / top, 1.0)


def _popularity(value: float | None, scales: SignalScales) -> float:
    if value is None or value <= 0:
        return 0.0
    return min(math.log1p(value) / math.log1p(scales.popularity_full), 1.0)


def _timestamp(product: Product) -> float | None:
    """When the product appeared: `published_at` if usable, else catalog entry time."""
    published = product.attributes.get("published_at")
    stamp = number(published)
    if stamp is not None:
        return stamp
    if isinstance(published, str):
        try:
            parsed = datetime.fromisoformat(published.strip().replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
    return product.created_at or None


def _freshness(stamp: float | None, now: float, scales: SignalScales) -> float:
    if stamp is None:
        return 0.0
    age_days = max(now - stamp, 0.0) / _DAY_S
    return 0.5 ** (age_days / scales.freshness_half_life_days)
