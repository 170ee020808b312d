"""Ranking: the ranker protocol, the features rankers compute, and the built-in rankers."""

from lookalike.search.ranking.base import Ranker, Ranking, ordered
from lookalike.search.ranking.features import BASE_FEATURES, SIGNALS, SignalScales
from lookalike.search.ranking.hand_weighted import HandWeightedRanker, RerankWeights
from lookalike.search.ranking.registry import create_ranker, known_rankers, register_ranker

__all__ = [
    "BASE_FEATURES",
    "SIGNALS",
    "HandWeightedRanker",
    "Ranker",
    "Ranking",
    "RerankWeights",
    "SignalScales",
    "create_ranker",
    "known_rankers",
    "ordered",
    "register_ranker",
]
