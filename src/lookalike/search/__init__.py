"""Search: query -> candidates -> filter -> re-rank -> diversify -> results."""

from lookalike.search.compose import hybrid, mean_direction, subtract
from lookalike.search.diversity import Diversity, diversify
from lookalike.search.filtering import CandidateFinder, FilterPolicy
from lookalike.search.rerank import SIGNALS, Reranker, RerankWeights
from lookalike.search.results import SearchHit, SearchResults
from lookalike.search.service import SearchService

__all__ = [
    "SIGNALS",
    "CandidateFinder",
    "Diversity",
    "FilterPolicy",
    "RerankWeights",
    "Reranker",
    "SearchHit",
    "SearchResults",
    "SearchService",
    "diversify",
    "hybrid",
    "mean_direction",
    "subtract",
]
