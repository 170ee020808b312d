"""The Cache protocol: bytes by string key with a time to live, plus hit/miss counters."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0  # backend failures, answered as misses


class Cache(Protocol):
    """A bounded key -> bytes store. Never raises for a backend failure: a cache that
    cannot answer is a miss, and a write it cannot make is dropped."""

    name: str

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values (None where missing or expired), in the order of `keys`."""
        ...

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store `value` for `ttl_s` seconds (> 0)."""
        ...

    def stats(self) -> CacheStats: ...

    def close(self) -> None: ...


class Counters:
    """Thread-safe hit/miss/error counts shared by the backends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits = self._misses = self._errors = 0

    def record(self, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        with self._lock:
            self._hits += hits
            self._misses += misses
            self._errors += errors

    def snapshot(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._errors)
