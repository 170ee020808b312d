"""The catalog's perceptual hashes in a FAISS binary index, for Hamming range search.

`IndexBinaryFlat` compares a query with every hash (a popcount each: ~1 ms per query at a
million items); above MULTI_HASH_AT items `IndexBinaryMultiHash` splits the 64 bits into
radius + 1 tables, which by the pigeonhole principle still finds every hash within the
radius while looking at a fraction of them. Rows are appended as the catalog gains them
(`refresh`); rows whose product has since changed image are filtered out by the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.catalog.base import Catalog, HashRow
from lookalike.encode.phash import HASH_BITS, hash_bytes

MULTI_HASH_AT = 200_000


@dataclass(frozen=True)
class HashMatch:
    query: int  # row of the query array
    row: HashRow
    distance: int


class HashIndex:
    def __init__(self, radius: int) -> None:
        self.radius = radius
        self.rows: list[HashRow] = []
        self.by_vector: dict[int, HashRow] = {}
        self.last_vector_id = -1
        self._index = None
        # API threads write (and so search and add) at once; a FAISS index is not safe to
        # add to while another thread searches it.
        self._lock = threading.RLock()

    def _new_index(self, expected: int):
        import faiss

        if expected >= MULTI_HASH_AT and self.radius + 1 <= HASH_BITS // 4:
            tables = self.radius + 1
            return faiss.IndexBinaryMultiHash(HASH_BITS, tables, HASH_BITS // tables)
        return faiss.IndexBinaryFlat(HASH_BITS)

    def add(self, rows: Sequence[HashRow]) -> None:
        if not rows:
            return
        with self._lock:
            if self._index is None:
                self._index = self._new_index(len(rows))
            self._index.add(hash_bytes(np.array([r.phash for r in rows], dtype=np.uint64)))
            self.rows.extend(rows)
            self.by_vector.update((r.vector_id, r) for r in rows)
            self.last_vector_id = max(self.last_vector_id, max(r.vector_id for r in rows))

    def refresh(self, catalog: Catalog) -> int:
        """Add the hashes the catalog gained since the last refresh; returns how many."""
        with self._lock:
            fresh = catalog.image_hashes(after_vector_id=self.last_vector_id)
            self.add(fresh)
        return len(fresh)

    def __len__(self) -> int:
        return len(self.rows)

    def within(self, hashes: np.ndarray, radius: int | None = None) -> list[HashMatch]:
        """Stored hashes within `radius` bits (default: the index's) of each query hash."""
        if self._index is None or len(hashes) == 0:
            return []
        radius = self.radius if radius is None else radius
        with self._lock:
            # FAISS binary range search keeps distances strictly below the radius given.
            limits, distances, found = self._index.range_search(
                hash_bytes(np.asarray(hashes, dtype=np.uint64)), radius + 1
            )
        matches = []
        for query in range(len(hashes)):
            for j in range(limits[query], limits[query + 1]):
                matches.append(HashMatch(query, self.rows[int(found[j])], int(distances[j])))
        return matches
