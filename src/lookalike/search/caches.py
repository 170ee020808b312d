"""The search path's two caches on the configured cache backend: query embeddings (by
image content or normalised text) and whole result pages (by query vectors and state)."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.cache import Cache, CacheBackend, open_cache_backend
from lookalike.cache.embeddings import EmbeddingCache
from lookalike.config import Settings
from lookalike.search.result_cache import ResultCache


@dataclass
class SearchCaches:
    backend: CacheBackend
    embeddings: EmbeddingCache
    results: ResultCache

    @classmethod
    def open(cls, settings: Settings, namespace: str) -> SearchCaches:
        """`namespace` tells catalogs that share one cache server apart."""
        backend = open_cache_backend(settings)
        embeddings = EmbeddingCache(backend.cache("embeddings"), settings.embedding_cache_ttl_s)
        results = ResultCache(backend.cache("results"), settings.result_cache_ttl_s, namespace)
        return cls(backend, embeddings, results)

    @property
    def active(self) -> list[Cache]:
        """The caches in use (a TTL of 0 turns one off)."""
        return [c for c in (self.embeddings.cache, self.results.cache) if c is not None]

    def close(self) -> None:
        self.backend.close()
