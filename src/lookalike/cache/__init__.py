"""Byte caches for query embeddings and search results: in-process LRU by default, Redis
when configured (shared by every worker and replica). Backends by URL scheme."""

from lookalike.cache.base import Cache, CacheStats
from lookalike.cache.factory import (
    CacheBackend,
    CacheCapabilities,
    cache_url,
    open_cache,
    open_cache_backend,
    register_cache,
)

__all__ = [
    "Cache",
    "CacheBackend",
    "CacheCapabilities",
    "CacheStats",
    "cache_url",
    "open_cache",
    "open_cache_backend",
    "register_cache",
]
