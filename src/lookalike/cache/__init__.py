"""Caches for query embeddings and search results: in-process LRU by default, Redis when
`LOOKALIKE_REDIS_URL` is set (shared by every worker and replica)."""

from lookalike.cache.base import Cache, CacheStats
from lookalike.cache.factory import SearchCaches, open_cache, open_search_caches

__all__ = ["Cache", "CacheStats", "SearchCaches", "open_cache", "open_search_caches"]
