"""Search: query -> candidates -> filter -> re-rank -> results."""

from lookalike.search.compose import hybrid, mean_direction
from lookalike.search.results import SearchHit, SearchResults
from lookalike.search.service import SearchService

__all__ = ["SearchHit", "SearchResults", "SearchService", "hybrid", "mean_direction"]
