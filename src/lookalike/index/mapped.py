"""A saved FAISS index mapped read-only from its file, plus this process's later writes.

Several processes (the workers of `lookalike serve --workers N`) map one saved file: its
vectors sit once in the page cache, however many workers search them. Writes made after
the file was saved go to a small private delta: an exact in-memory flat index of the
vectors added since, and the ids removed since, which the mapped part's searches leave
out. A search merges the two.

`fold()` (the index's `save`) writes the delta into a new snapshot: a private copy of the
mapped file is read, the removals and additions applied, the result saved under the
directory's lock like any index (`index/persist.py`: dropped if the saved index is further
along the log), then mapped in place of the old one, and the copy dropped. One process
folds at a time (a second lock, taken without waiting: whoever finds it taken leaves the
fold to its holder and maps the result when it lands).
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import IndexMismatch
from lookalike.files.lock import try_exclusive_lock
from lookalike.index.base import IndexCapabilities, IndexMeta
from lookalike.index.faiss_index import FaissIndex, FlatIndex
from lookalike.index.persist import saved_meta, snapshot_path

log = logging.getLogger(__name__)

# Held while a process folds or rebuilds the directory's index (never while searching).
FOLD_LOCK = ".fold.lock"


@dataclass(frozen=True)
class _State:
    """What a search reads, replaced as a whole (a search never sees half a fold)."""

    base: FaissIndex  # mapped from a saved file; never written
    base_ids: np.ndarray  # its live ids, sorted
    hidden: np.ndarray  # base ids removed (or replaced) since it was saved, sorted
    delta: FlatIndex  # vectors added since it was saved


class MappedIndex:
    """A `VectorIndex` over a mapped snapshot and a private delta (see the module doc)."""

    shared = False

    def __init__(self, base: FaissIndex) -> None:
        self.meta: IndexMeta = copy.deepcopy(base.meta)
        self.capabilities: IndexCapabilities = base.capabilities
        self._write = threading.Lock()  # writes and folds, one at a time
        self._state = self._fresh_state(base)

    @staticmethod
    def _fresh_state(base: FaissIndex) -> _State:
        delta = FlatIndex(IndexMeta("flat", base.meta.dim, base.meta.model_id), None)
        delta.threads = base.threads
        empty = np.zeros(0, dtype=np.int64)
        return _State(base, base.ids(), empty, delta)

    # --- what the planner and LiveIndex read ---------------------------------------------
    @property
    def kind(self) -> str:
        return self._state.base.kind

    @property
    def base(self) -> FaissIndex:
        return self._state.base

    @property
    def directory(self) -> Path | None:
        return self._state.base.directory

    @property
    def snapshot(self) -> int:
        """The saved snapshot this process maps."""
        return self._state.base.meta.snapshot

    @property
    def stale_fraction(self) -> float:
        """Deleted entries the saved file still holds (HNSW tombstones); a fold removes the
        hidden ones."""
        return self._state.base.stale_fraction

    @property
    def delta_size(self) -> int:
        """Entries a fold would write: vectors added and ids hidden since the snapshot."""
        state = self._state
        return len(state.delta) + len(state.hidden)

    @property
    def changed(self) -> bool:
        """Whether this index differs from its snapshot (entries, watermark or params)."""
        state = self._state
        base = state.base.meta
        return bool(
            len(state.delta)
            or len(state.hidden)
            or self.meta.watermark != base.watermark
            or self.meta.params != base.params
        )

    # --- protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        state = self._state
        return len(state.base) - len(state.hidden) + len(state.delta)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._write:
            state = self._state
            # An id the snapshot holds gets a new vector: its saved one must not answer.
            self._hide(np.intersect1d(ids, state.base_ids))
            state.delta.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if not len(ids):
            return 0
        with self._write:
            state = self._state
            saved = np.intersect1d(ids, state.base_ids, assume_unique=True)
            newly = np.setdiff1d(saved, state.hidden, assume_unique=True)
            self._hide(newly)
            return len(newly) + state.delta.remove(ids)

    def _hide(self, ids: np.ndarray) -> None:
        if len(ids):
            state = self._state
            self._state = replace(state, hidden=np.union1d(state.hidden, ids))

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        state = self._state
        found = state.base.search(queries, k, allowed_ids=allowed_ids, excluded_ids=state.hidden)
        if not len(state.delta):
            return found
        added = state.delta.search(queries, k, allowed_ids=allowed_ids)
        return merge_results(found, added, k)

    def ids(self) -> np.ndarray:
        """The ids of the live entries, sorted."""
        state = self._state
        saved = np.setdiff1d(state.base_ids, state.hidden, assume_unique=True)
        return np.union1d(saved, state.delta.ids())

    def set_search_params(self, **values: Any) -> None:
        self._state.base.set_search_params(**values)
        self.meta.params.update(values)

    def save(self) -> None:
        self.fold()

    def describe(self) -> dict[str, Any]:
        state = self._state
        return {
            "type": self.kind,
            "vectors": len(self),
            "dim": self.meta.dim,
            "params": self.meta.params,
            "memory_bytes": state.base.memory_bytes(),
            "watermark": self.meta.watermark,
            "memory": "mapped",
            "snapshot": self.snapshot,
            "delta": {"added": len(state.delta), "removed": len(state.hidden)},
        }

    # --- folding -------------------------------------------------------------------------
    def fold(self) -> bool:
        """Save this index (snapshot + delta) as a new snapshot and map it; returns whether
        it did. It does not when nothing changed, when another process is folding, when the
        mapped snapshot was removed meanwhile (two newer ones landed), or when the saved
        index is further along the log (this process then maps that one: LiveIndex)."""
        directory = self.directory
        if directory is None:
            return False
        with self._write:
            if not self.changed:
                return False
            with try_exclusive_lock(directory / FOLD_LOCK) as mine:
                if not mine or self._behind(directory):
                    return False
                merged = self._merged(directory)
                if merged is None or not merged.publish():
                    return False
                path = snapshot_path(directory, merged.meta.snapshot)
                base = self._state.base
                try:
                    mapped = type(base).read_file(
                        path, merged.meta, directory, vectors=base.vectors, mapped=True
                    )
                except IndexMismatch as exc:  # replaced already: LiveIndex maps the newest
                    log.info("folded snapshot %s gone before it was mapped: %s", path, exc)
                    return True
            mapped.threads = base.threads
            self._state = self._fresh_state(mapped)
            self.meta.snapshot = mapped.meta.snapshot
        return True

    def _behind(self, directory: Path) -> bool:
        """Whether the saved index is further along the log (checked before the costly copy;
        the save checks again under its lock)."""
        try:
            saved = saved_meta(directory)
        except IndexMismatch:
            return False
        return (
            saved is not None
            and saved.catalog_id == self.meta.catalog_id
            and saved.watermark > self.meta.watermark
        )

    def _merged(self, directory: Path) -> FaissIndex | None:
        """A private copy of the mapped snapshot with the delta applied."""
        state = self._state
        base = state.base
        try:
            merged = type(base).read_file(
                snapshot_path(directory, base.meta.snapshot),
                base.meta,
                directory,
                vectors=base.vectors,
            )
        except IndexMismatch as exc:
            log.info("fold skipped: the mapped snapshot is gone (%s)", exc)
            return None
        merged.threads = base.threads
        merged.remove(state.hidden)
        merged.add(*state.delta.entries())
        merged.meta = copy.deepcopy(self.meta)
        return merged


def merge_results(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best k of two (scores, ids) results per query, best first; -1 ids pad."""
    scores = np.concatenate([first[0], second[0]], axis=1)
    ids = np.concatenate([first[1], second[1]], axis=1)
    scores = np.where(ids >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best_scores = np.take_along_axis(scores, order, axis=1)
    best_ids = np.where(np.isfinite(best_scores), np.take_along_axis(ids, order, axis=1), -1)
    return best_scores.astype(np.float32), best_ids.astype(np.int64)
