"""The hand-weighted ranker: similarity plus small, weighted business signals.

    score = similarity + sum(weight[s] * signal[s])    for s in popularity, rating,
                                                          conversion, freshness

The signals are the features of `ranking/features.py`, each in [0, 1]; the ranker reports
every feature of `FEATURES` (the search log keeps them for training), scoring on the
first five. The defaults
(popularity 0.05, rating 0.05, conversion 0, freshness 0.02) are ours: small enough that
similarity decides and a signal only breaks near-ties (cosine similarities of a query's
top results often differ by about 0.01-0.05). A request may override any weight.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lookalike.config import Settings
from lookalike.errors import InvalidInput
from lookalike.search.ranking.base import Ranking
from lookalike.search.ranking.features import (
    BASE_FEATURES,
    FEATURES,
    SIGNALS,
    SignalScales,
    ranking_features,
)
from lookalike.search.request import QueryContext
from lookalike.search.results import SearchHit


@dataclass(frozen=True)
class RerankWeights:
    """Weight of each business signal; all zero means rank by similarity alone."""

    popularity: float = 0.0
    rating: float = 0.0
    conversion: float = 0.0
    freshness: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RerankWeights:
        return cls(
            popularity=settings.rerank_popularity,
            rating=settings.rerank_rating,
            conversion=settings.rerank_conversion,
            freshness=settings.rerank_freshness,
        )

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
class HandWeightedRanker:
    """The Ranker protocol with fixed weights (settings, a request's overrides on top)."""

    weights: RerankWeights
    scales: SignalScales = field(default_factory=SignalScales)
    name: str = field(default="hand", init=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, overrides: Mapping[str, float] | None = None
    ) -> HandWeightedRanker:
        """The settings' weights, with a request's per-signal overrides applied."""
        weights = RerankWeights.from_settings(settings).override(overrides)
        return cls(weights, SignalScales.from_settings(settings))

    @property
    def version(self) -> str:
        """The weights (and scales) as a short digest: which hand weights ordered a page."""
        text = repr((self.weights, self.scales)).encode()
        return hashlib.blake2b(text, digest_size=4).hexdigest()

    @property
    def reorders(self) -> bool:
        return self.weights.active

    def rank(self, context: QueryContext, hits: Sequence[SearchHit], now: float) -> Ranking:
        features = ranking_features(context, hits, self.scales, now)
        return Ranking(self.score(features), features, FEATURES)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Scores of feature rows (FEATURES order, or BASE_FEATURES: the first columns)."""
        scores = features[:, 0].copy()
        if self.reorders and len(features):
            signals = features[:, 1 : len(BASE_FEATURES)]
            scores += signals @ self.weights.as_array()
        return scores


@dataclass(frozen=True)
class SimilarityRanker(HandWeightedRanker):
    """Similarity order (every weight 0), under its own name; features are still computed
    and logged, so its traffic trains a learned ranker as well as any."""

    weights: RerankWeights = field(default_factory=RerankWeights)
    name: str = field(default="similarity", init=False)
