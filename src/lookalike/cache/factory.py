"""Cache backends by URL scheme: in-process (`memory://`, the default) or Redis
(`redis://`, shared by every worker and replica). Shaped like the encoder registry: a
backend registers a builder for its schemes, declares its capabilities and describes
itself; nothing else names a backend.

The URL is `LOOKALIKE_CACHE_URL`, else `LOOKALIKE_REDIS_URL`, else `memory://`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from lookalike.cache.base import Cache
from lookalike.config import Settings
from lookalike.errors import ConfigError

REDIS_PREFIX = "lookalike:cache:"


@dataclass(frozen=True)
class CacheCapabilities:
    shared_between_processes: bool  # every worker and replica sees one cache


class CacheBackend(Protocol):
    """Where a process's named caches live."""

    capabilities: CacheCapabilities

    def cache(self, name: str) -> Cache:
        """The cache called `name` (one per use: embeddings, results, ...)."""
        ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


CacheBuilder = Callable[[str, Settings], CacheBackend]
_BUILDERS: dict[str, CacheBuilder] = {}


def register_cache(*schemes: str) -> Callable[[CacheBuilder], CacheBuilder]:
    def decorate(builder: CacheBuilder) -> CacheBuilder:
        for scheme in schemes:
            _BUILDERS[scheme] = builder
        return builder

    return decorate


def cache_url(settings: Settings) -> str:
    return settings.cache_url or settings.redis_url or "memory://"


def open_cache_backend(settings: Settings, url: str | None = None) -> CacheBackend:
    """The backend the settings (or `url`) name; unknown schemes list the known ones."""
    url = url or cache_url(settings)
    scheme = urlsplit(url).scheme
    builder = _BUILDERS.get(scheme)
    if builder is None:
        raise ConfigError(
            f"unsupported cache URL {url!r}: known schemes {', '.join(sorted(_BUILDERS))}"
        )
    return builder(url, settings)


def open_cache(settings: Settings, name: str) -> Cache:
    """One cache named `name` on the configured backend."""
    return open_cache_backend(settings).cache(name)


# --- built-in backends ---------------------------------------------------------------------
class MemoryCaches:
    """Each process keeps its own caches, each bounded by `cache_max_bytes`."""

    capabilities = CacheCapabilities(shared_between_processes=False)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._caches: list[Cache] = []

    def cache(self, name: str) -> Cache:
        from lookalike.cache.lru import LRUCache

        cache = LRUCache(name, self.max_bytes)
        self._caches.append(cache)
        return cache

    def describe(self) -> dict[str, Any]:
        return {"type": "memory", "max_bytes_each": self.max_bytes}

    def close(self) -> None:
        for cache in self._caches:
            cache.close()


class RedisCaches:
    """One Redis connection pool shared by the process's caches, keys under a prefix."""

    capabilities = CacheCapabilities(shared_between_processes=True)

    def __init__(self, url: str) -> None:
        from lookalike.cache.redis import connect_redis

        self.url = url
        self.client = connect_redis(url)

    def cache(self, name: str) -> Cache:
        from lookalike.cache.redis import RedisCache

        return RedisCache(name, self.client, prefix=f"{REDIS_PREFIX}{name}:")

    def describe(self) -> dict[str, Any]:
        from lookalike.redact import redact_url

        return {"type": "redis", "url": redact_url(self.url)}

    def close(self) -> None:
        self.client.close()


@register_cache("memory")
def _memory(url: str, settings: Settings) -> CacheBackend:
    return MemoryCaches(settings.cache_max_bytes)


@register_cache("redis", "rediss", "unix")
def _redis(url: str, settings: Settings) -> CacheBackend:
    return RedisCaches(url)
