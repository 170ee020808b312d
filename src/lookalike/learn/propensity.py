"""Position bias: shoppers click what is on top, whether or not it is what they want.

We correct it by inverse propensity weighting (IPW). The propensity of a slot is how
likely a shopper is to look at it, relative to the first slot. It is measured on the
small share of searches whose top slots were shown in random order
(`LOOKALIKE_RANK_EXPLORE_SHARE`): there the item in a slot is unrelated to the slot, so
the click rate per slot differs only by attention. A click at slot p then counts
1 / propensity(p) in training, so a click low on the page (rare: few look there) weighs
more than one at the top (easy: everyone looks). Propensities are made non-increasing and
clipped below (`clip`) so a few lucky clicks low down cannot dominate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.errors import InvalidInput
from lookalike.learn.dataset import RankingData

MIN_RANDOMISED_CLICKS = 20
PROPENSITY_SLOTS = 100  # the most results a page may have (max_limit's default)


@dataclass(frozen=True)
class Propensities:
    by_position: tuple[float, ...]  # [0] is slot 1 (1.0); later slots reuse the last value
    method: str  # "randomised" (estimated) or "none" (every slot 1: no correction)
    searches: int = 0  # randomised searches they were estimated from
    clicks: int = 0
    eta: float | None = None  # the fitted power law's exponent

    def of(self, positions: np.ndarray) -> np.ndarray:
        table = np.asarray(self.by_position, dtype=np.float64)
        index = np.clip(np.asarray(positions, dtype=np.int64) - 1, 0, len(table) - 1)
        return table[index]

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "eta": None if self.eta is None else round(self.eta, 4),
            "by_position": [round(p, 6) for p in self.by_position[:20]],
            "randomised_searches": self.searches,
            "randomised_clicks": self.clicks,
        }


NO_CORRECTION = Propensities((1.0,), "none")


def estimate_propensities(
    data: RankingData, *, clip: float = 0.05, min_clicks: int = MIN_RANDOMISED_CLICKS
) -> Propensities:
    """Click rate per slot on the randomised searches, relative to slot 1."""
    randomised = data.explored > 0
    searches = int(randomised.sum())
    depth = int(data.explored.max()) if searches else 0
    shown = np.zeros(depth)
    clicked = np.zeros(depth)
    for start, size, k in zip(
        data.starts[randomised],
        data.group_sizes[randomised],
        data.explored[randomised],
        strict=True,
    ):
        k = min(int(k), int(size))
        rows = slice(start, start + size)
        for position, grade in zip(data.positions[rows], data.grades[rows], strict=True):
            if 1 <= position <= k:
                shown[position - 1] += 1
                clicked[position - 1] += grade > 0
    total = int(clicked.sum())
    if total < min_clicks or not clicked[0]:
        raise InvalidInput(
            f"too few clicks on randomised searches to measure position bias ({total} clicks "
            f"on {searches} searches, {min_clicks} needed): set LOOKALIKE_RANK_EXPLORE_SHARE "
            "(e.g. 0.05) and log more, or train with --position-bias none"
        )
    rate = clicked / np.maximum(shown, 1)
    slots = np.arange(1, depth + 1)
    used = (clicked > 0) & (slots > 1)
    x, y, w = np.log(slots[used]), np.log(rate[used] / rate[0]), clicked[used]
    slope = float((w * x * y).sum() / (w * x * x).sum()) if used.any() else 0.0
    eta = max(-slope, 0.0)  # attention never grows down the page
    fitted = np.clip(np.arange(1, PROPENSITY_SLOTS + 1, dtype=np.float64) ** -eta, clip, 1.0)
    return Propensities(tuple(float(p) for p in fitted), "randomised", searches, total, eta)


def ipw_weights(data: RankingData, propensities: Propensities) -> np.ndarray:
    """Row weights for training: 1 / propensity at a graded row's slot; ungraded rows take
    the mean weight of their group's graded rows (so each (graded, ungraded) pair weighs
    what its graded row does: exactly the IPW estimate for the usual one-click search).
    Scaled to mean 1."""
    weights = np.ones(len(data.grades))
    if not len(weights) or propensities.method == "none":
        return weights
    inverse = 1.0 / propensities.of(data.positions)
    graded = data.grades > 0
    group = data.group_of_rows()
    sums = np.bincount(group, weights=np.where(graded, inverse, 0.0), minlength=data.groups)
    counts = np.bincount(group, weights=graded.astype(float), minlength=data.groups)
    mean = np.divide(sums, counts, out=np.ones(data.groups), where=counts > 0)
    weights = np.where(graded, inverse, mean[group])
    return weights / weights.mean()
