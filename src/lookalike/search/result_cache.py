"""Search result cache: (query vectors, options, ranker, catalog state) -> results as JSON.

The key includes the catalog's version (moved by every product write, metadata-only ones
included) and the index's watermark (how much of the change log this process's index has
applied), both read before searching. A write therefore changes the key at once, and a
server whose index still lags a write made elsewhere never stores its stale answer under
the newer state. Entries also expire after a short TTL (re-ranking by freshness drifts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any

import numpy as np

from lookalike.cache.base import Cache
from lookalike.search.results import FORMAT, SearchResults

log = logging.getLogger(__name__)


class ResultCache:
    def __init__(self, cache: Cache | None, ttl_s: float, namespace: str) -> None:
        self.cache = cache if ttl_s > 0 else None
        self.ttl_s = ttl_s
        self.namespace = namespace  # tells catalogs sharing one Redis apart

    @property
    def enabled(self) -> bool:
        return self.cache is not None

    def key(self, queries: np.ndarray, params: dict[str, Any]) -> str:
        """Key for query vectors and everything else the results depend on."""
        digest = hashlib.blake2b(digest_size=20)
        digest.update(f"{FORMAT}\0{self.namespace}\0".encode())
        digest.update(json.dumps(params, sort_keys=True, default=_jsonable).encode())
        digest.update(np.ascontiguousarray(queries, dtype="<f4").tobytes())
        return digest.hexdigest()

    def get(self, key: str) -> SearchResults | None:
        if self.cache is None:
            return None
        raw = self.cache.get_many([key])[0]
        if raw is None:
            return None
        try:
            return SearchResults.from_json(raw)
        except (ValueError, TypeError, KeyError) as exc:  # written by another version
            log.warning("ignoring an unreadable result cache entry: %s", exc)
            return None

    def put(self, key: str, results: SearchResults) -> None:
        if self.cache is not None:
            self.cache.set(key, results.to_json(), self.ttl_s)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)
