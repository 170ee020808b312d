"""Randomised slots: a small share of searches shows its top k results in random order
(`rank_explore_share`, `rank_explore_top_k`), logged as such.

On those searches the item at a slot is unrelated to the slot, so clicks per slot there
measure how much attention each slot gets (its examination propensity) and nothing else;
`lookalike train-ranker` weighs clicks by the inverse of it (learn/propensity.py).
"""

from __future__ import annotations

import random

from lookalike.search.results import SearchResults


def shuffle_top(results: SearchResults, top_k: int, rng: random.Random) -> SearchResults:
    """The results with their first `top_k` hits (and feature rows) in random order."""
    k = min(top_k, len(results.hits))
    if k < 2:
        return results
    order = list(range(k))
    rng.shuffle(order)
    results.hits[:k] = [results.hits[i] for i in order]
    if results.features is not None and len(results.features) >= k:
        features = results.features.copy()
        features[:k] = results.features[order]
        results.features = features
    results.explored = k
    return results
