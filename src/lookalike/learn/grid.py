"""The strongest hand-weighted baseline: every combination of the hand weights on a grid,
scored on the same training logs (and the same debiased NDCG@10) the learned ranker
learns from. The learned ranker has to beat the best of them, not the defaults."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from lookalike.learn.metrics import Padded, per_search
from lookalike.search.ranking.features import BASE_FEATURES, SIGNALS
from lookalike.search.ranking.hand_weighted import RerankWeights

GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


@dataclass(frozen=True)
class GridResult:
    weights: RerankWeights
    ndcg: float  # on the training searches
    tried: int


def hand_scores(features: np.ndarray, weights: RerankWeights) -> np.ndarray:
    """The hand-weighted ranker's scores of feature rows in FEATURES order."""
    return features[:, 0] + features[:, 1 : len(BASE_FEATURES)] @ weights.as_array()


def grid_search(
    features: np.ndarray, padded: Padded, grid: tuple[float, ...] = GRID, progress: bool = True
) -> GridResult:
    best: tuple[float, RerankWeights] = (-1.0, RerankWeights())
    combos = list(itertools.product(grid, repeat=len(SIGNALS)))
    for values in tqdm(combos, desc="hand-weight grid", unit="weights", disable=not progress):
        weights = RerankWeights(*values)
        ndcg, _ = per_search(padded, hand_scores(features, weights))
        score = float(ndcg.mean()) if len(ndcg) else 0.0
        if score > best[0] + 1e-12:  # ties keep the earlier (smaller) weights
            best = (score, weights)
    return GridResult(best[1], best[0], len(combos))
