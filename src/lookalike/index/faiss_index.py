"""FAISS indexes kept in-process and saved as `index.faiss` + `index.json`.

`FaissIndex` holds what every FAISS family shares (ids, locking, atomic save, filtered
search); a family only says how to build its FAISS object and how to set search-time knobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from lookalike.errors import IndexMismatch
from lookalike.index.base import IndexMeta
from lookalike.index.persist import atomic_write, read_meta, write_meta
from lookalike.index.rwlock import RWLock

INDEX_FILE = "index.faiss"
META_FILE = "index.json"


class FaissIndex:
    """Base for FAISS families. Subclasses set `kind` and implement `_build`."""

    kind: ClassVar[str] = ""
    shared = False

    def __init__(self, meta: IndexMeta, directory: Path | None, index: Any = None) -> None:
        self.meta = meta
        self.directory = directory
        self._lock = RWLock()
        self._index = index if index is not None else self._build(meta.dim, meta.params)

    # --- family hooks --------------------------------------------------------------------
    def _build(self, dim: int, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _search_parameters(self, selector: Any) -> Any:
        """Family-specific SearchParameters carrying the id selector (None = default)."""
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    # --- protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.meta.dim):
            raise IndexMismatch(
                f"vectors of shape {vectors.shape} do not fit ids {len(ids)} x dim {self.meta.dim}"
            )
        with self._lock.write():
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        with self._lock.write():
            return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if k <= 0 or len(self) == 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return _empty(len(queries), max(k, 0))
        selector = None
        if allowed_ids is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
        params = self._search_parameters(selector)
        with self._lock.read():
            scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    def save(self) -> None:
        if self.directory is None:
            return
        with self._lock.read():
            # Index file first: a crash before the meta lands leaves an older watermark,
            # and replaying log entries is idempotent.
            atomic_write(
                self.directory / INDEX_FILE, lambda tmp: faiss.write_index(self._index, tmp)
            )
            write_meta(self.directory / META_FILE, self.meta)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "vectors": len(self),
            "dim": self.meta.dim,
            "params": self.meta.params,
            "memory_bytes": self.memory_bytes(),
            "watermark": self.meta.watermark,
        }

    def memory_bytes(self) -> int:
        return len(self) * self.meta.dim * 4

    # --- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: Path) -> FaissIndex:
        meta = read_meta(directory / META_FILE)
        if meta.kind != cls.kind:
            raise IndexMismatch(f"saved index is {meta.kind!r}, not {cls.kind!r}")
        try:
            index = faiss.read_index(str(directory / INDEX_FILE))
        except RuntimeError as exc:
            raise IndexMismatch(f"unreadable index file in {directory}: {exc}") from exc
        if index.d != meta.dim:
            raise IndexMismatch(f"index file has dim {index.d}, metadata says {meta.dim}")
        return cls(meta, directory, index)


class FlatIndex(FaissIndex):
    """Exact inner-product search: the reference every ANN family is measured against."""

    kind = "flat"

    def _build(self, dim: int, params: dict[str, Any]) -> Any:
        return faiss.IndexIDMap(faiss.IndexFlatIP(dim))


def _empty(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((queries, k), -np.inf, dtype=np.float32), np.full((queries, k), -1, np.int64)


def saved_kind(directory: Path) -> str | None:
    """The family of the index saved in `directory`, if any."""
    if not (directory / META_FILE).exists() or not (directory / INDEX_FILE).exists():
        return None
    return read_meta(directory / META_FILE).kind
