"""Pick the cache backend from settings: Redis when `redis_url` is set, else in-process."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.cache.base import Cache
from lookalike.cache.embeddings import EmbeddingCache
from lookalike.cache.lru import LRUCache
from lookalike.cache.redis import RedisCache, connect_redis
from lookalike.cache.results import ResultCache
from lookalike.config import Settings

REDIS_PREFIX = "lookalike:cache:"


def open_cache(settings: Settings, name: str, client=None) -> Cache:
    """A cache named `name`; `client` shares one Redis connection pool between caches."""
    if settings.redis_url:
        client = client or connect_redis(settings.redis_url)
        return RedisCache(name, client, prefix=f"{REDIS_PREFIX}{name}:")
    return LRUCache(name, settings.cache_max_bytes)


@dataclass
class SearchCaches:
    embeddings: EmbeddingCache
    results: ResultCache

    @property
    def backends(self) -> list[Cache]:
        return [c for c in (self.embeddings.cache, self.results.cache) if c is not None]

    def close(self) -> None:
        for cache in self.backends:
            cache.close()


def open_search_caches(settings: Settings, namespace: str) -> SearchCaches:
    """The embedding and result caches a search engine uses (a TTL of 0 turns one off)."""
    client = connect_redis(settings.redis_url) if settings.redis_url else None
    embeddings = results = None
    if settings.embedding_cache_ttl_s > 0:
        embeddings = open_cache(settings, "embeddings", client)
    if settings.result_cache_ttl_s > 0:
        results = open_cache(settings, "results", client)
    return SearchCaches(
        EmbeddingCache(embeddings, settings.embedding_cache_ttl_s),
        ResultCache(results, settings.result_cache_ttl_s, namespace),
    )
