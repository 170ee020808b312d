"""Offline ranking metrics on logged searches, with the position bias taken out, and
bootstrap intervals over searches.

A scorer re-orders each logged search's shown hits. A hit with an event has gain
`2**grade - 1` (click 1, add-to-cart 3, purchase 7) divided by the propensity of the slot
it was shown at (inverse propensity scoring: a click where few look counts more), so a
re-ordering is not rewarded just for keeping the logging ranker's top slots on top.

* NDCG@10: DCG of the re-ordered gains over the ideal DCG of the same gains.
* MRR: reciprocal rank, in the new order, of the hits with an event, averaged with their
  debiased gains as weights (with the usual single click: 1 / its new rank).

Both are averaged over searches with at least one event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lookalike.learn.dataset import RankingData
from lookalike.learn.propensity import Propensities

K = 10


@dataclass(frozen=True)
class Padded:
    """Graded searches as (searches, longest) matrices; padding has gain 0, score -inf."""

    gains: np.ndarray
    mask: np.ndarray  # True where a row is real
    rows: np.ndarray  # (searches, longest) index into the data's rows (-1 = padding)

    def scores(self, row_scores: np.ndarray) -> np.ndarray:
        out = np.full(self.rows.shape, -np.inf)
        out[self.mask] = row_scores[self.rows[self.mask]]
        return out


def pad(data: RankingData, propensities: Propensities) -> Padded:
    """The searches of `data` with an event, padded for vectorised metrics."""
    graded = data.with_events()
    starts, sizes = data.starts[graded], data.group_sizes[graded]
    longest = int(sizes.max()) if len(sizes) else 1
    rows = np.full((len(sizes), longest), -1, dtype=np.int64)
    offsets = np.arange(longest)
    mask = offsets[None, :] < sizes[:, None]
    rows[mask] = (starts[:, None] + offsets[None, :])[mask]
    gain = (2.0**data.grades - 1) / propensities.of(data.positions)
    gains = np.zeros(rows.shape)
    gains[mask] = gain[rows[mask]]
    return Padded(gains, mask, rows)


def per_search(padded: Padded, row_scores: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(NDCG@k, MRR) of each search when its hits are ordered by `row_scores`; ties keep
    the logged order."""
    scores = padded.scores(row_scores)
    order = np.argsort(-scores, axis=1, kind="stable")
    gains = np.take_along_axis(padded.gains, order, axis=1)
    width = min(k, gains.shape[1])
    discount = 1.0 / np.log2(np.arange(2, width + 2))
    dcg = gains[:, :width] @ discount
    ideal = -np.sort(-padded.gains, axis=1)[:, :width] @ discount
    ndcg = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    ranks = np.arange(1, gains.shape[1] + 1)
    total = gains.sum(axis=1)
    mrr = np.divide((gains / ranks).sum(axis=1), total, out=np.zeros_like(total), where=total > 0)
    return ndcg, mrr


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float  # 95% bootstrap interval
    high: float

    def to_list(self) -> list[float]:
        return [round(self.mean, 4), round(self.low, 4), round(self.high, 4)]

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap(
    values: dict[str, np.ndarray], *, resamples: int = 1000, seed: int = 0
) -> tuple[Callable[[str], Estimate], Callable[[str, str], Estimate]]:
    """Per-search values of several scorers (same searches, same order) -> the mean of
    each with a 95% interval, and paired differences between two, from the same resamples
    of searches."""
    n = len(next(iter(values.values()))) if values else 0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, max(n, 1), size=(resamples, n))
    means = {
        name: v[picks].mean(axis=1) if n else np.zeros(resamples) for name, v in values.items()
    }

    def estimate(name: str) -> Estimate:
        return _interval(float(values[name].mean()) if n else 0.0, means[name])

    def difference(a: str, b: str) -> Estimate:
        point = float((values[a] - values[b]).mean()) if n else 0.0
        return _interval(point, means[a] - means[b])

    return estimate, difference


def _interval(point: float, samples: np.ndarray) -> Estimate:
    low, high = np.percentile(samples, [2.5, 97.5])
    return Estimate(point, float(low), float(high))
