"""Per-candidate features, computed the same way for serving, logging and training.

Each feature maps a product (and its similarity to the query) to a number by a fixed rule,
so a product's value does not depend on which other products happen to be in the pool:

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
from lookalike.search.results import SearchHit

SIGNALS = ("popularity", "rating", "conversion", "freshness")
BASE_FEATURES = ("similarity", *SIGNALS)
_DAY_S = 86_400.0


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
