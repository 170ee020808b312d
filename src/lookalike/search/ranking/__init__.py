"""Ranking: the ranker protocol, the features rankers compute, and the built-in rankers
(hand-weighted, similarity alone, learned), A/B arms and randomised slots."""

from lookalike.search.ranking.arms import CANDIDATE, CONTROL, Assignment, assign_arm
from lookalike.search.ranking.base import Ranker, Ranking, ordered
from lookalike.search.ranking.features import (
    BASE_FEATURES,
    FEATURES,
    SIGNALS,
    SignalScales,
    ranking_features,
)
from lookalike.search.ranking.hand_weighted import (
    HandWeightedRanker,
    RerankWeights,
    SimilarityRanker,
)
from lookalike.search.ranking.learned import (
    FellBack,
    LearnedModels,
    LearnedRanker,
    fallback_of,
)
from lookalike.search.ranking.model_files import (
    MODEL_FORMAT,
    LearnedModel,
    load_model,
    model_digest,
    read_model_dir,
    write_model_dir,
)
from lookalike.search.ranking.registry import create_ranker, known_rankers, register_ranker

__all__ = [
    "BASE_FEATURES",
    "CANDIDATE",
    "CONTROL",
    "FEATURES",
    "MODEL_FORMAT",
    "SIGNALS",
    "Assignment",
    "FellBack",
    "HandWeightedRanker",
    "LearnedModel",
    "LearnedModels",
    "LearnedRanker",
    "Ranker",
    "Ranking",
    "RerankWeights",
    "SignalScales",
    "SimilarityRanker",
    "assign_arm",
    "create_ranker",
    "fallback_of",
    "known_rankers",
    "load_model",
    "model_digest",
    "ordered",
    "ranking_features",
    "read_model_dir",
    "register_ranker",
    "write_model_dir",
]
