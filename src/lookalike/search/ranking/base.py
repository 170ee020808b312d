"""The ranker protocol: what turns a pool of candidates into the final order.

A ranker sees the query context (kind, filters, which inputs) and the whole candidate pool
with similarities; it returns a score per candidate and the feature values it computed,
so that a learned ranker can be trained on exactly what it will see when serving (the
search log keeps them). The pipeline sorts by score, similarity breaking ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lookalike.search.request import QueryContext
from lookalike.search.results import SearchHit


@dataclass(frozen=True)
class Ranking:
    """A ranker's verdict on a pool: one score and one feature row per candidate."""

    scores: np.ndarray  # (n,) float64, higher is better
    features: np.ndarray  # (n, len(feature_names)) float64
    feature_names: tuple[str, ...]
    # Set when the ranker could not score this pool itself and another one did (why).
    fallback: str | None = None

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.features.shape != (n, len(self.feature_names)):
            raise ValueError(
                f"features of shape {self.features.shape} do not fit {n} candidates x "
                f"{len(self.feature_names)} names"
            )


class Ranker(Protocol):
    """Orders candidates; implementations are registered by name (`ranking/registry.py`)."""

    name: str  # the registry name, e.g. "hand"
    version: str  # what exactly ordered the results (weights digest, model version)

    @property
    def reorders(self) -> bool:
        """False when the order is plain similarity order: the pipeline then fetches no
        more candidates than it returns."""
        ...

    def rank(self, context: QueryContext, hits: Sequence[SearchHit], now: float) -> Ranking:
        """Scores and features for `hits` (in their given order)."""
        ...


def ordered(hits: Sequence[SearchHit], ranking: Ranking) -> tuple[list[SearchHit], np.ndarray]:
    """Hits with their new scores, best first (similarity breaks ties), and the feature rows
    in that same order."""
    if not hits:
        return [], ranking.features
    order = np.lexsort((-np.array([h.similarity for h in hits]), -ranking.scores))
    ranked = [
        SearchHit(hits[i].product, float(ranking.scores[i]), hits[i].similarity) for i in order
    ]
    return ranked, ranking.features[order]
