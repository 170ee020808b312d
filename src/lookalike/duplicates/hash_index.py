"""The catalog's perceptual hashes in a FAISS binary index, for Hamming range search.

`IndexBinaryFlat` compares a query with every hash (a popcount each: ~1 ms per query at a
million items); above MULTI_HASH_AT items `IndexBinaryMultiHash` splits the 64 bits into
radius + 1 tables, which by the pigeonhole principle still finds every hash within the
radius while looking at a fraction of them. Rows are appended as the catalog gains them
(`refresh`); rows whose product has since changed image are filtered out by the caller.

A second index holds every row's sub-crop hashes (`encode.phash.crop_hashes`, a few per
image), each mapped to the row it belongs to: a cropped copy's whole-image hash meets one of
its original's sub-crop hashes there (`crops_within`), and an original written after its
crop meets the crop's whole-image hash in the first index with its own sub-crop hashes.
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
    def __init__(self, radius: int, crop_radius: int = 0) -> None:
        self.radius = radius
        self.crop_radius = crop_radius
        self.rows: list[HashRow] = []
        self.crop_owner: list[int] = []  # sub-crop hash -> its row in `rows`
        self.by_vector: dict[int, HashRow] = {}
        self.last_vector_id = -1
        self._index = None
        self._crops = None
        # API threads write (and so search and add) at once; a FAISS index is not safe to
        # add to while another thread searches it.
        self._lock = threading.RLock()

    @staticmethod
    def _new_index(expected: int, radius: int):
        import faiss

        if expected >= MULTI_HASH_AT and radius + 1 <= HASH_BITS // 4:
            tables = radius + 1
            return faiss.IndexBinaryMultiHash(HASH_BITS, tables, HASH_BITS // tables)
        return faiss.IndexBinaryFlat(HASH_BITS)

    def add(self, rows: Sequence[HashRow]) -> None:
        if not rows:
            return
        with self._lock:
            if self._index is None:
                self._index = self._new_index(len(rows), self.radius)
            self._index.add(hash_bytes(np.array([r.phash for r in rows], dtype=np.uint64)))
            crops = [(len(self.rows) + i, h) for i, r in enumerate(rows) for h in r.crops]
            if crops:
                if self._crops is None:
                    self._crops = self._new_index(len(crops), self.crop_radius)
                self._crops.add(hash_bytes(np.array([h for _, h in crops], dtype=np.uint64)))
                self.crop_owner.extend(owner for owner, _ in crops)
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
        radius = self.radius if radius is None else radius
        return self._range(self._index, hashes, radius, None)

    def crops_within(self, hashes: np.ndarray) -> list[HashMatch]:
        """Rows with a sub-crop hash within `crop_radius` bits of a query hash (one match
        per row and query, at its closest sub-crop)."""
        closest: dict[tuple[int, int], HashMatch] = {}
        for match in self._range(self._crops, hashes, self.crop_radius, self.crop_owner):
            key = (match.query, id(match.row))
            if key not in closest or match.distance < closest[key].distance:
                closest[key] = match
        return list(closest.values())

    def _range(self, index, hashes: np.ndarray, radius: int, owner: list[int] | None):
        if index is None or len(hashes) == 0:
            return []
        with self._lock:
            # FAISS binary range search keeps distances strictly below the radius given.
            limits, distances, found = index.range_search(
                hash_bytes(np.asarray(hashes, dtype=np.uint64)), radius + 1
            )
            rows = self.rows if owner is None else [self.rows[owner[int(f)]] for f in found]
        matches = []
        for query in range(len(hashes)):
            for j in range(limits[query], limits[query + 1]):
                row = self.rows[int(found[j])] if owner is None else rows[j]
                matches.append(HashMatch(query, row, int(distances[j])))
        return matches
