"""Redis cache: shared by every worker and replica. Values are raw bytes (float32 vectors,
JSON results), never pickles. When Redis fails, the cache answers misses and stops asking
for a few seconds, so searches go on without it and without waiting on timeouts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lookalike.cache.base import CacheStats, Counters
from lookalike.errors import ConfigError

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

# Short timeouts: a cache that answers slowly is worse than none.
SOCKET_TIMEOUT_S = 0.5
RETRY_AFTER_S = 5.0


def connect_redis(url: str, *, socket_timeout: float | None = SOCKET_TIMEOUT_S) -> redis.Redis:
    """A client for `url` (connections are made lazily, on first use)."""
    try:
        import redis
    except ImportError as exc:
        raise ConfigError(
            "LOOKALIKE_REDIS_URL needs the redis package: pip install 'lookalike[redis]'"
        ) from exc
    try:
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {url!r}: {exc}") from exc


class RedisCache:
    def __init__(
        self, name: str, client: redis.Redis, prefix: str, *, retry_after_s: float = RETRY_AFTER_S
    ) -> None:
        self.name = name
        self.client = client
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._counters = Counters()
        self._down_until = 0.0
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = self._call(self.client.mget, [self.prefix + key for key in keys])
        if values is None:
            self._counters.record(misses=len(keys))
            return [None] * len(keys)
        hits = sum(value is not None for value in values)
        self._counters.record(hits=hits, misses=len(keys) - hits)
        return list(values)

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s > 0:
            self._call(self.client.set, self.prefix + key, value, px=max(int(ttl_s * 1000), 1))

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one Redis command; None when Redis is (recently) unreachable."""
        import redis

        if time.monotonic() < self._down_until:
            return None
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            self._counters.record(errors=1)
            with self._lock:
                if time.monotonic() >= self._down_until:
                    log.warning(
                        "%s cache: Redis failed (%s); caching paused for %.0f s",
                        self.name,
                        exc,
                        self.retry_after_s,
                    )
                self._down_until = time.monotonic() + self.retry_after_s
            return None

    def stats(self) -> CacheStats:
        return self._counters.snapshot()

    def close(self) -> None:
        self.client.close()
