"""Re-ranking: similarity plus small, weighted business signals.

    score = similarity + sum(weight[s] * signal[s])    for s in popularity, rating,
                                                          conversion, freshness

Each signal is read from the product and mapped to [0, 1] by a fixed rule, so a product's
bonus does not depend on which other products happen to be in the candidate pool:

* popularity — attribute `popularity` (views, sales: any count >= 0), log-scaled:
  `log1p(p) / log1p(rerank_popularity_full)`, capped at 1.
* rating — attribute `rating` divided by `rerank_rating_max` (5 stars by default).
* conversion — attribute `conversion`, a rate already in [0, 1].
* freshness — `0.5 ** (age_days / rerank_freshness_half_life_days)`, the age taken from
  attribute `published_at` (epoch seconds or an ISO-8601 date) when present, else from
  when the product entered the catalog (`created_at`).

A missing, non-numeric or negative value gives 0 (no bonus); values past the top are
capped. The defaults (popularity 0.05, rating 0.05, conversion 0, freshness 0.02) are
ours — small enough that similarity decides and a signal only breaks near-ties: cosine
similarities of a query's top results often differ by about 0.01-0.05.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from lookalike.catalog.base import Product
from lookalike.config import Settings
from lookalike.errors import InvalidInput
from lookalike.search.results import SearchHit

SIGNALS = ("popularity", "rating", "conversion", "freshness")
_DAY_S = 86_400.0


@dataclass(frozen=True)
class RerankWeights:
    """Weight of each business signal; all zero means rank by similarity alone."""

    popularity: float = 0.0
    rating: float = 0.0
    conversion: float = 0.0
    freshness: float = 0.0

    @property
    def active(self) -> bool:
        return any(getattr(self, name) != 0.0 for name in SIGNALS)

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in SIGNALS], dtype=np.float64)

    def override(self, weights: Mapping[str, float] | None) -> RerankWeights:
        """These weights with some replaced (a request's override); unnamed ones stay."""
        if not weights:
            return self
        unknown = sorted(set(weights) - set(SIGNALS))
        if unknown:
            raise InvalidInput(
                f"unknown re-ranking signal(s) {', '.join(unknown)}; known: {', '.join(SIGNALS)}"
            )
        checked: dict[str, float] = {}
        for name, value in weights.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInput(f"re-ranking weight {name!r} must be a number")
            if not math.isfinite(value):
                raise InvalidInput(f"re-ranking weight {name!r} must be finite")
            checked[name] = float(value)
        return replace(self, **checked)


@dataclass(frozen=True)
class SignalScales:
    """How raw attribute values map to [0, 1]."""

    popularity_full: float = 10_000.0
    rating_max: float = 5.0
    freshness_half_life_days: float = 30.0


@dataclass(frozen=True)
class Reranker:
    weights: RerankWeights
    scales: SignalScales = SignalScales()

    @classmethod
    def from_settings(
        cls, settings: Settings, overrides: Mapping[str, float] | None = None
    ) -> Reranker:
        """The settings' weights, with a request's per-signal overrides applied."""
        weights = RerankWeights(
            popularity=settings.rerank_popularity,
            rating=settings.rerank_rating,
            conversion=settings.rerank_conversion,
            freshness=settings.rerank_freshness,
        ).override(overrides)
        scales = SignalScales(
            popularity_full=settings.rerank_popularity_full,
            rating_max=settings.rerank_rating_max,
            freshness_half_life_days=settings.rerank_freshness_half_life_days,
        )
        return cls(weights, scales)

    @property
    def active(self) -> bool:
        return self.weights.active

    def signals(self, products: list[Product], now: float | None = None) -> np.ndarray:
        """(n, 4) matrix of signals in [0, 1], columns in SIGNALS order."""
        now = time.time() if now is None else now
        out = np.zeros((len(products), len(SIGNALS)), dtype=np.float64)
        for row, product in enumerate(products):
            attrs = product.attributes
            out[row, 0] = _popularity(_number(attrs.get("popularity")), self.scales)
            out[row, 1] = _unit(_number(attrs.get("rating")), self.scales.rating_max)
            out[row, 2] = _unit(_number(attrs.get("conversion")), 1.0)
            out[row, 3] = _freshness(_timestamp(product), now, self.scales)
        return out

    def apply(self, hits: list[SearchHit], now: float | None = None) -> list[SearchHit]:
        """Hits with `score = similarity + bonus`, best score first (similarity breaks ties)."""
        if not hits:
            return []
        if not self.active:
            scored = [SearchHit(h.product, h.similarity, h.similarity) for h in hits]
        else:
            bonus = self.signals([h.product for h in hits], now) @ self.weights.as_array()
            scored = [
                SearchHit(h.product, float(h.similarity + b), h.similarity)
                for h, b in zip(hits, bonus, strict=True)
            ]
        return sorted(scored, key=lambda h: (-h.score, -h.similarity))


def _number(value: Any) -> float | None:
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
    number = _number(published)
    if number is not None:
        return number
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
