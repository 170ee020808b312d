"""Search: compose -> candidates -> filter -> rank -> diversify -> results (`pipeline.py`)."""

from lookalike.search.candidates import CandidateFinder, FilterPolicy
from lookalike.search.compose import ComposedQuery, QueryComposer, hybrid, mean_direction, subtract
from lookalike.search.diversity import Diversity, diversify
from lookalike.search.pipeline import SearchPipeline
from lookalike.search.ranking import (
    SIGNALS,
    HandWeightedRanker,
    Ranker,
    Ranking,
    RerankWeights,
    create_ranker,
    register_ranker,
)
from lookalike.search.request import QueryContext, QueryKind, SearchRequest, check_options
from lookalike.search.result_cache import ResultCache
from lookalike.search.results import SearchHit, SearchResults

__all__ = [
    "SIGNALS",
    "CandidateFinder",
    "ComposedQuery",
    "Diversity",
    "FilterPolicy",
    "HandWeightedRanker",
    "QueryComposer",
    "QueryContext",
    "QueryKind",
    "Ranker",
    "Ranking",
    "RerankWeights",
    "ResultCache",
    "SearchHit",
    "SearchPipeline",
    "SearchRequest",
    "SearchResults",
    "check_options",
    "create_ranker",
    "diversify",
    "hybrid",
    "mean_direction",
    "register_ranker",
    "subtract",
]
