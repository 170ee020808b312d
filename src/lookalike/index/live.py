"""An index kept in step with the catalog: open or rebuild, replay the change log, save."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from lookalike.catalog.base import Catalog
from lookalike.index.base import IndexMeta, VectorIndex

log = logging.getLogger(__name__)

IndexOpener = Callable[[IndexMeta], VectorIndex]


class BuildPlan(Protocol):
    def describe(self) -> str: ...


class Maintainer(Protocol):
    """Decides when an index should be rebuilt, and rebuilds it (the planner)."""

    def review(self, index: VectorIndex) -> str | None: ...

    def plan(self, *, previous: VectorIndex | None = None) -> BuildPlan: ...

    def build(self, plan: Any = None, *, progress: bool = False) -> VectorIndex: ...


class LiveIndex:
    """Wraps a VectorIndex; `catch_up()` applies catalog changes made by anyone, anywhere.

    With a `maintainer`, an index that the changes have outgrown (the catalog passed a
    size threshold, too many tombstones) is rebuilt from the catalog and swapped in.
    """

    def __init__(
        self,
        index: VectorIndex,
        catalog: Catalog,
        *,
        save_interval_s: float = 30.0,
        maintainer: Maintainer | None = None,
        progress: bool = False,
    ) -> None:
        self.index = index
        self.catalog = catalog
        self.save_interval_s = save_interval_s
        self.maintainer = maintainer
        self.progress = progress
        self._sync_lock = threading.Lock()
        self._last_save = time.monotonic()
        self._dirty = False

    @property
    def watermark(self) -> int:
        return self.index.meta.watermark

    def catch_up(self, batch: int = 100_000) -> int:
        """Apply every change-log entry after the watermark; returns entries applied."""
        if self.index.shared:
            return 0  # a shared engine is written directly by the catalog's writers
        with self._sync_lock:
            applied = self._replay(self.index, batch)
            if applied:
                self._dirty = True
                self._maintain()
        return applied

    def _replay(self, index: VectorIndex, batch: int = 100_000) -> int:
        applied = 0
        while True:
            changes = self.catalog.changes_since(index.meta.watermark, batch, index.meta.model_id)
            if changes.head == index.meta.watermark:
                return applied
            # Removing the ids about to be added makes replaying an entry idempotent.
            stale = np.union1d(changes.remove_ids, changes.add_ids)
            index.remove(stale)
            if len(changes.add_ids):
                index.add(changes.add_ids, changes.add_vectors)
            applied += changes.head - index.meta.watermark
            index.meta.watermark = changes.head

    def maintain(self) -> bool:
        """Rebuild the index now if the maintainer says it is due; returns whether it did."""
        with self._sync_lock:
            return self._maintain()

    def _maintain(self) -> bool:
        if self.maintainer is None:
            return False
        reason = self.maintainer.review(self.index)
        if reason is None:
            return False
        plan = self.maintainer.plan(previous=self.index)
        log.warning("rebuilding the index (%s): %s", reason, plan.describe())
        fresh = self.maintainer.build(plan, progress=self.progress)
        self._replay(fresh)  # writes made while it was building
        fresh.save()
        self.index = fresh
        self._dirty = False
        self._last_save = time.monotonic()
        return True

    def save(self, *, force: bool = False, changed: bool = False) -> bool:
        """Snapshot when dirty and due (or forced); returns whether it saved.

        `changed` marks the index dirty first (its parameters changed, e.g. by tuning)."""
        self._dirty = self._dirty or changed
        due = time.monotonic() - self._last_save >= self.save_interval_s
        if not self._dirty or not (force or due):
            return False
        with self._sync_lock:
            self.index.save()
            self._dirty = False
            self._last_save = time.monotonic()
        return True

    def describe(self) -> dict[str, Any]:
        return self.index.describe()


def rebuild_from_catalog(
    index: VectorIndex, catalog: Catalog, *, progress: bool = False
) -> VectorIndex:
    """Fill an empty index with every stored embedding (no re-encoding)."""
    # The head is read first: anything written while we copy is replayed afterwards.
    index.meta.watermark = catalog.log_head()
    model_id = index.meta.model_id
    total = catalog.stats().models.get(model_id, 0) if model_id else catalog.stats().searchable
    with tqdm(
        total=total, desc=f"{index.meta.kind} index", unit="vec", disable=not progress
    ) as bar:
        for ids, vectors in catalog.iter_embeddings(model_id=model_id):
            index.add(ids, vectors)
            bar.update(len(ids))
    log.info("rebuilt %s index with %d vectors", index.meta.kind, len(index))
    return index
