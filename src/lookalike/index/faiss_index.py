"""FAISS indexes kept in-process, saved as snapshots (`index/persist.py`).

`FaissIndex` holds what every FAISS family shares (ids, locking, saving, filtered
search); a family says how to build its FAISS object, how to set search-time knobs, and how
to turn raw candidates into final results (IVF-PQ re-ranks them exactly). A saved index
loads either as a private copy in memory or mapped read-only from its file (`mapped`),
which every process on the machine shares through the page cache.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from lookalike.errors import IndexError_, IndexMismatch
from lookalike.index.base import IndexCapabilities, IndexMeta
from lookalike.index.persist import META_FILE, open_snapshot, save_snapshot, saved_meta
from lookalike.index.rwlock import RWLock

__all__ = ["META_FILE", "FaissIndex", "FlatIndex", "empty_results", "id_selector", "saved_kind"]

# Stored float vectors by id (the catalog's), for exact re-ranking and small filtered sets.
VectorSource = Callable[[np.ndarray], dict[int, np.ndarray]]


class FaissIndex:
    """Base for FAISS families. Subclasses set `kind` and implement `_build`.

    `vectors`, when given, looks up stored float vectors by id; families that keep only
    compressed codes use it to score candidates exactly.
    """

    kind: ClassVar[str] = ""
    capabilities: ClassVar[IndexCapabilities] = IndexCapabilities()
    shared = False
    # Parameters a family reads from `meta.params`, with their defaults.
    defaults: ClassVar[dict[str, Any]] = {}
    # Search-time knobs among them (settings may override them; `tune` sets them).
    search_knobs: ClassVar[tuple[str, ...]] = ()
    # How `faiss.read_index` maps this family's file instead of copying it: the vectors
    # (flat, HNSW storage) in place, or the inverted lists (IVF).
    mmap_flags: ClassVar[int] = faiss.IO_FLAG_MMAP_IFC

    def __init__(
        self,
        meta: IndexMeta,
        directory: Path | None,
        index: Any = None,
        *,
        vectors: VectorSource | None = None,
    ) -> None:
        meta.params = {**self.defaults, **meta.params}
        self.meta = meta
        self.directory = directory
        self.vectors = vectors
        # OpenMP threads for FAISS calls (None: all cores). OpenMP keeps this per calling
        # thread, so it is applied on every call, in whichever thread makes it.
        self.threads: int | None = None
        # Mapped read-only from its file: searchable, never written (see `load`).
        self.mapped = False
        self._lock = RWLock()
        self._index = index if index is not None else self._build(meta.dim, meta.params)
        # Bumped by every write: the id -> node lookup (`_nodes_of`) is rebuilt after one.
        self._writes = 0
        self._lookup: tuple[int, np.ndarray, np.ndarray] | None = None

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def stale_fraction(self) -> float:
        """Share of stored entries that are deleted but still take space (tombstones)."""
        return 0.0

    # --- family hooks --------------------------------------------------------------------
    def _build(self, dim: int, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _search_parameters(self, selector: Any, k: int, widen: float) -> Any:
        """Family-specific SearchParameters carrying the id selector (None = default).

        `widen` >= 1 is how much rarer matching entries are than entries in the index
        (a filter keeps 1/widen of them): graph and list searches look that much wider.
        """
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _selector(self, allowed_ids: np.ndarray | None, excluded_ids: np.ndarray | None) -> Any:
        """The FAISS IDSelector for a search (None = every entry); `excluded_ids` is only
        given without `allowed_ids`."""
        if allowed_ids is not None:
            return id_selector(allowed_ids)
        if excluded_ids is not None:
            return faiss.IDSelectorNot(id_selector(excluded_ids))
        return None

    def _candidates(self, k: int) -> int:
        """How many raw candidates to fetch for a final top-k."""
        return k

    def _finish(
        self, queries: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS results -> final (scores, ids), inner products, best first."""
        return scores, ids

    def _search_subset(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact search over a small allowed set, or None to use the index with a filter."""
        return None

    def _float_vectors(self) -> Any:
        """The IndexFlat holding this index's float vectors by node, if it has one."""
        return None

    def _gathered(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact top-k over the allowed ids' own stored vectors, gathered by node: a small
        subset costs its size, where a selector scan costs the whole index (1M entries,
        513 allowed: ~4 ms scanning, a fraction of that gathered)."""
        storage = self._float_vectors()
        if storage is None:
            return None
        with self._lock.read():
            nodes = self._nodes_of(allowed_ids)
            if not len(nodes):
                return _empty(len(queries), k)
            matrix = faiss.rev_swig_ptr(storage.get_xb(), int(storage.ntotal) * self.meta.dim)
            vectors = np.asarray(matrix).reshape(-1, self.meta.dim)[nodes]  # a copy
            ids = self._id_view()[nodes]
        scores = queries @ vectors.T
        take = min(k, len(nodes))
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        part = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        top, part = np.take_along_axis(top, order, axis=1), np.take_along_axis(part, order, axis=1)
        out_scores, out_ids = _empty(len(queries), k)
        out_scores[:, :take], out_ids[:, :take] = part, ids[top]
        return out_scores, out_ids

    def _nodes_of(self, ids: np.ndarray) -> np.ndarray:
        """Nodes of the live entries among `ids` (called under the read lock)."""
        lookup = self._lookup
        if lookup is None or lookup[0] != self._writes:
            view = self._id_view()
            # Ids arrive in log order, so the view is nearly sorted: a stable sort is ~linear.
            order = np.argsort(view, kind="stable")
            lookup = (self._writes, view[order], order)
            self._lookup = lookup
        _, sorted_ids, order = lookup
        if not len(sorted_ids):
            return np.zeros(0, dtype=np.int64)
        at = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
        found = (sorted_ids[at] == ids) & (ids >= 0)
        return order[at[found]]

    # --- protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self._checked(ids, vectors)
        if not len(ids):
            return
        self._writable()
        self._use_threads()
        with self._lock.write():
            self._index.add_with_ids(vectors, ids)
            self._writes += 1

    def _writable(self) -> None:
        # FAISS would write into (or resize) a read-only mapping: a crash, not an error.
        if self.mapped:
            raise IndexError_(f"the {self.kind} index mapped from its file is read-only")

    def _checked(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) and vectors.shape != (len(ids), self.meta.dim):
            raise IndexMismatch(
                f"vectors of shape {vectors.shape} do not fit ids {len(ids)} x dim {self.meta.dim}"
            )
        return ids, vectors

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        self._writable()
        with self._lock.write():
            self._writes += 1
            return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed_ids: np.ndarray | None = None,
        excluded_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The protocol's search; `excluded_ids` (sorted) are left out as if removed (a
        mapped index hides the entries removed since it was saved)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.meta.dim:
            raise IndexMismatch(f"queries have dim {queries.shape[1]}, the index {self.meta.dim}")
        excluded = None
        if excluded_ids is not None and len(excluded_ids):
            excluded = np.ascontiguousarray(excluded_ids, dtype=np.int64)
            if allowed_ids is not None:
                allowed_ids, excluded = np.setdiff1d(allowed_ids, excluded), None
        if k <= 0 or len(self) == 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return _empty(len(queries), max(k, 0))
        widen = 1.0
        if allowed_ids is not None:
            allowed_ids = np.ascontiguousarray(allowed_ids, dtype=np.int64)
            subset = self._search_subset(queries, k, allowed_ids)
            if subset is not None:
                return subset
            widen = len(self) / max(len(allowed_ids), 1)
        elif excluded is not None:
            widen = len(self) / max(len(self) - len(excluded), 1)
        # Entries that are stored but deleted dilute results just as a filter does.
        widen *= 1.0 / max(1.0 - self.stale_fraction, 1e-3)
        fetch = self._candidates(k)
        with self._lock.read():
            # Bound to a name: the SearchParameters must not outlive their selector.
            selector = self._selector(allowed_ids, excluded)
            params = self._search_parameters(selector, fetch, max(widen, 1.0))
            scores, ids = self._search_faiss(queries, fetch, params)
        return self._finish(queries, scores, ids, k)

    def _use_threads(self) -> None:
        if self.threads:
            faiss.omp_set_num_threads(self.threads)

    def _search_faiss(self, queries: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, ...]:
        self._use_threads()
        if not isinstance(self._index, faiss.IndexIDMap):
            return self._index.search(queries, k, params=params)
        # IndexIDMap translates labels in an OpenMP loop whose start-up (milliseconds on a
        # busy machine) dwarfs the work for a few queries; translate in numpy instead.
        translated = None
        if params is not None and params.sel is not None:
            translated = faiss.IDSelectorTranslated(self._index, params.sel)
            params.sel = translated
        scores, nodes = self._index.index.search(queries, k, params=params)
        return scores, np.where(nodes >= 0, self._id_view()[nodes.clip(0)], -1)

    def _id_view(self) -> np.ndarray:
        """Node -> id of an IndexIDMap, as a writable view (invalid after the next add)."""
        size = self._index.id_map.size()
        if not size:
            return np.zeros(0, dtype=np.int64)
        return faiss.rev_swig_ptr(self._index.id_map.data(), size)

    def ids(self) -> np.ndarray:
        """The ids of the live entries, sorted."""
        with self._lock.read():
            ids = self._id_view().copy()
        return np.sort(ids[ids >= 0])  # HNSW tombstones are negative

    def save(self) -> None:
        self.publish()

    def publish(self) -> bool:
        """Save as the directory's index, unless the index saved there is further along the
        catalog log (see `index/persist.py`); returns whether this one became it."""
        if self.directory is None:
            return False
        with self._lock.read():
            # Under the read lock: the file and the metadata describe the same entries.
            meta = copy.deepcopy(self.meta)
            snapshot = save_snapshot(
                self.directory, meta, lambda tmp: faiss.write_index(self._index, tmp)
            )
        if snapshot is None:
            return False
        self.meta.snapshot = snapshot
        return True

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
        return self.estimate_bytes(int(self._index.ntotal), self.meta.dim, self.meta.params)

    @classmethod
    def estimate_bytes(cls, vectors: int, dim: int, params: dict[str, Any]) -> int:
        """Memory the index needs for `vectors` entries (printed before a build)."""
        return vectors * (dim * 4 + 8)

    def set_search_params(self, **values: Any) -> None:
        """Change search-time knobs (efSearch, nprobe, ...); saved with the index."""
        unknown = set(values) - set(self.search_knobs)
        if unknown:
            raise IndexMismatch(f"{self.kind} has no search parameter {sorted(unknown)}")
        with self._lock.write():
            self.meta.params.update(values)

    # --- loading -------------------------------------------------------------------------
    @classmethod
    def load(
        cls, directory: Path, *, vectors: VectorSource | None = None, mapped: bool = False
    ) -> FaissIndex:
        """The index saved in `directory`: a private copy, or `mapped` read-only."""
        return open_snapshot(
            directory,
            lambda path, meta: cls.read_file(path, meta, directory, vectors=vectors, mapped=mapped),
        )

    @classmethod
    def read_file(
        cls,
        path: Path,
        meta: IndexMeta,
        directory: Path | None,
        *,
        vectors: VectorSource | None = None,
        mapped: bool = False,
    ) -> FaissIndex:
        """The index in one saved file, described by `meta`."""
        if meta.kind != cls.kind:
            raise IndexMismatch(f"saved index is {meta.kind!r}, not {cls.kind!r}")
        try:
            index = faiss.read_index(str(path), cls.mmap_flags if mapped else 0)
        except RuntimeError as exc:
            raise IndexMismatch(f"unreadable index file {path}: {exc}") from exc
        if index.d != meta.dim:
            raise IndexMismatch(f"index file has dim {index.d}, metadata says {meta.dim}")
        loaded = cls(copy.deepcopy(meta), directory, index, vectors=vectors)
        loaded.mapped = mapped
        return loaded


class FlatIndex(FaissIndex):
    """Exact inner-product search: the reference every ANN family is measured against."""

    kind = "flat"
    # A selector scan costs a flat index no recall: it is exact under any filter.
    capabilities = IndexCapabilities(exact_filtered=True, selector_scan=True)

    def _build(self, dim: int, params: dict[str, Any]) -> Any:
        return faiss.IndexIDMap(faiss.IndexFlatIP(dim))

    def _float_vectors(self) -> Any:
        return faiss.downcast_index(self._index.index)

    def _search_subset(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        if len(allowed_ids) > GATHER_MAX_SHARE * len(self):
            return None  # a selector scan of every entry is cheaper than the gather
        return self._gathered(queries, k, allowed_ids)

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every entry, in the order they were added."""
        with self._lock.read():
            count = int(self._index.ntotal)
            if not count:
                return np.zeros(0, dtype=np.int64), np.zeros((0, self.meta.dim), np.float32)
            return self._id_view().copy(), self._index.index.reconstruct_n(0, count)


# Allowed sets up to this share of a flat index are scored by gathering their vectors; above
# it a selector scan of every entry costs less (a gather reads rows scattered in memory).
GATHER_MAX_SHARE = 0.05

# Sets above this many ids are selected through a dense bitmap: IDSelectorBatch hashes
# every id (~100 ms for 500k ids), a bitmap over the id range costs a pass of numpy (~2 ms).
BATCH_SELECTOR_MAX = 4_096


def id_selector(ids: np.ndarray) -> Any:
    """A FAISS IDSelector for int64 ids (the selector keeps its arrays alive)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) <= BATCH_SELECTOR_MAX or int(ids.min()) < 0:
        return faiss.IDSelectorBatch(ids)
    present = np.zeros(int(ids.max()) + 1, dtype=bool)
    present[ids] = True
    return faiss.IDSelectorBitmap(np.packbits(present, bitorder="little"))


def empty_results(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) with nothing found: -inf scores, -1 ids."""
    return _empty(queries, k)


def _empty(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((queries, k), -np.inf, dtype=np.float32), np.full((queries, k), -1, np.int64)


def saved_kind(directory: Path) -> str | None:
    """The family of the index saved in `directory`, if any."""
    meta = saved_meta(directory)
    return meta.kind if meta is not None else None
