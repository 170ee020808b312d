"""In-process LRU cache bounded by size in bytes, with per-entry expiry."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from lookalike.cache.base import CacheStats, Counters

# What an entry costs beyond its key and value (the dict slot, the tuple, the float).
ENTRY_OVERHEAD = 120


class LRUCache:
    """Thread-safe; the least recently used entries go first when `max_bytes` is reached."""

    def __init__(
        self, name: str, max_bytes: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._counters = Counters()

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        out: list[bytes | None] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None and entry[1] <= now:
                    self._drop(key)
                    entry = None
                if entry is not None:
                    self._entries.move_to_end(key)
                out.append(entry[0] if entry is not None else None)
        hits = sum(value is not None for value in out)
        self._counters.record(hits=hits, misses=len(out) - hits)
        return out

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        size = _cost(key, value)
        if size > self.max_bytes or ttl_s <= 0:
            return
        with self._lock:
            now = self._clock()
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (value, now + ttl_s)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
            # Expired entries at the cold end go now, not when the size bound pushes them
            # out: a result cache (30 s) would otherwise always sit at its bound. Entries
            # of one cache share a TTL, so the cold end is where they expire first.
            while self._entries:
                oldest = next(iter(self._entries))
                if self._entries[oldest][1] > now:
                    break
                self._drop(oldest)

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self._bytes -= _cost(key, value)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def stats(self) -> CacheStats:
        return self._counters.snapshot()

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def _cost(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD
