"""Diversity: caps per category/brand, and maximal marginal relevance (MMR).

Both are greedy passes over a re-ranked candidate pool that is larger than `limit` (the
service widens the pool when the caps leave too few). Items without a category (brand)
are not capped by the category (brand) cap.

MMR (Carbonell & Goldstein, 1998) picks, one at a time, the candidate maximising

    lambda * score - (1 - lambda) * max cosine(candidate, already picked)

with `score` the re-ranked score and the cosine taken between stored embeddings.
`mmr_lambda = 1` is the plain ranking; lower values trade relevance for variety.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.errors import InvalidInput
from lookalike.search.results import SearchHit


@dataclass
class Diversity:
    """Diversify the result list; each option is off when None."""

    max_per_category: int | None = None
    max_per_brand: int | None = None
    mmr_lambda: float | None = None  # maximal marginal relevance: 1 = relevance only

    def validate(self) -> None:
        """Raise InvalidInput for options that cannot be honoured."""
        for name in ("max_per_category", "max_per_brand"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidInput(f"{name} must be a whole number of at least 1, got {value!r}")
        lam = self.mmr_lambda
        if lam is not None and (
            isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0
        ):
            raise InvalidInput(f"mmr_lambda must be within [0, 1], got {self.mmr_lambda}")

    @property
    def active(self) -> bool:
        return (
            self.max_per_category is not None
            or self.max_per_brand is not None
            or self.mmr_lambda is not None
        )

    @property
    def capped(self) -> bool:
        return self.max_per_category is not None or self.max_per_brand is not None


def diversify(
    hits: Sequence[SearchHit],
    limit: int,
    diversity: Diversity,
    embeddings: np.ndarray | None = None,
) -> list[SearchHit]:
    """Up to `limit` hits from `hits` (best first) honouring the caps, MMR-ordered when
    `diversity.mmr_lambda` is set (then `embeddings` holds one row per hit; zero rows for
    hits without a stored embedding)."""
    allowed = _CapTracker(diversity)
    if diversity.mmr_lambda is None:
        chosen: list[SearchHit] = []
        for hit in hits:
            if len(chosen) >= limit:
                break
            if allowed.take(hit):
                chosen.append(hit)
        return chosen
    if embeddings is None or len(embeddings) != len(hits):
        raise ValueError("MMR needs one embedding row per hit")
    return _mmr(list(hits), limit, diversity.mmr_lambda, embeddings, allowed)


def _mmr(
    hits: list[SearchHit],
    limit: int,
    lam: float,
    embeddings: np.ndarray,
    allowed: _CapTracker,
) -> list[SearchHit]:
    relevance = np.array([h.score for h in hits], dtype=np.float64)
    vectors = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    # Highest cosine to anything picked so far; nothing picked yet counts as 0.
    redundancy = np.full(len(hits), -np.inf)
    open_ = np.ones(len(hits), dtype=bool)
    chosen: list[SearchHit] = []
    while len(chosen) < limit and open_.any():
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        value = np.where(open_, lam * relevance - (1.0 - lam) * penalty, -np.inf)
        best = int(np.argmax(value))
        open_[best] = False
        if not allowed.take(hits[best]):
            continue
        chosen.append(hits[best])
        redundancy = np.maximum(redundancy, vectors @ vectors[best])
    return chosen


class _CapTracker:
    """Counts picks per category and brand; `take` says whether a hit still fits."""

    def __init__(self, diversity: Diversity) -> None:
        self.max_category = diversity.max_per_category
        self.max_brand = diversity.max_per_brand
        self.categories: dict[str, int] = {}
        self.brands: dict[str, int] = {}

    def take(self, hit: SearchHit) -> bool:
        category, brand = hit.product.category, hit.product.brand
        if (
            self.max_category is not None
            and category is not None
            and self.categories.get(category, 0) >= self.max_category
        ):
            return False
        if (
            self.max_brand is not None
            and brand is not None
            and self.brands.get(brand, 0) >= self.max_brand
        ):
            return False
        if category is not None:
            self.categories[category] = self.categories.get(category, 0) + 1
        if brand is not None:
            self.brands[brand] = self.brands.get(brand, 0) + 1
        return True
