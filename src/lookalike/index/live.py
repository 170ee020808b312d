"""An index kept in step with the catalog: open or rebuild, replay the change log, save."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from lookalike.catalog.base import Catalog, VectorChanges
from lookalike.catalog.filter_bitmaps import FilterBitmaps
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

    With `filters` (the filterable fields in memory, `catalog/filter_bitmaps.py`), every
    stretch of the log replayed into the index is applied to them too, so searches find
    the matching ids of a filter there instead of asking the catalog.
    """

    def __init__(
        self,
        index: VectorIndex,
        catalog: Catalog,
        *,
        save_interval_s: float = 30.0,
        maintainer: Maintainer | None = None,
        progress: bool = False,
        filters: FilterBitmaps | None = None,
    ) -> None:
        self.index = index
        self.filters = filters
        self.catalog = catalog
        self.save_interval_s = save_interval_s
        self.maintainer = maintainer
        self.progress = progress
        self._sync_lock = threading.Lock()
        self._last_save = time.monotonic()
        self._dirty = False
        # Called with the commit times of each stretch of the log made searchable here
        # (the freshness metric); set once the index is open, so its first catch-up of
        # writes made while the process was down is not counted.
        self.on_applied: Callable[[np.ndarray], None] | None = None

    @property
    def watermark(self) -> int:
        return self.index.meta.watermark

    def catch_up(self, batch: int = 100_000) -> int:
        """Apply every change-log entry after the watermark; returns entries applied."""
        if self.index.shared:
            return 0  # a shared engine is written directly by the catalog's writers
        with self._sync_lock:
            self._refresh()
            applied = self._replay(self.index, batch)
            if applied:
                self._dirty = True
                self._maintain()
            self._filters_catch_up()
        return applied

    def keep_filters_of(self, previous: LiveIndex | None) -> None:
        """Take over `previous`'s filter bitmaps (a rebuilt index of the same model): they
        describe the catalog, not the index, so they need no rebuild, only the log."""
        filters = previous.filters if previous is not None else None
        if filters is not None and filters.model_id == self.index.meta.model_id:
            self.filters = filters
            self.catch_up()

    def _filters_catch_up(self) -> None:
        """Bring the filter bitmaps to the index's watermark when the replay did not (they
        were built at another point of the log)."""
        if self.filters is not None and self.filters.watermark < self.index.meta.watermark:
            self.filters.catch_up(self.catalog)

    def apply_writes(self, batch: int = 100_000) -> int:
        """Make committed catalog writes searchable: every write path calls this right after
        its catalog commit; returns log entries applied.

        A local index catches up from its own watermark (and saves when due). A shared
        index (one store every replica reads) is written here, by the writer: it replays
        the log from the watermark all writers share, so the writes of a writer that
        crashed after its commit are not lost, and upserts by id make replaying
        idempotent. Writers apply concurrently, so one may write an older view of a
        product after another wrote a newer one; but every replay ends by reading the log
        again after its last write, so a change committed before then is applied again
        (fresh), and one committed after is applied by its own writer, later. The new
        watermark is recorded at once, so the next writer starts from there.
        """
        if not self.index.shared:
            applied = self.catch_up(batch)
            self.save()
            return applied
        with self._sync_lock:
            self.index.meta.watermark = self.index.load_watermark()  # type: ignore[attr-defined]
            applied = self._replay(self.index, batch)
            if applied:
                self.index.save()
                self._dirty = False
        return applied

    def _refresh(self) -> None:
        """Take up an index another process saved, if this kind of LiveIndex does (a
        mapped one does); called with the sync lock held, before replaying."""

    def _replay(self, index: VectorIndex, batch: int = 100_000) -> int:
        """Apply the log after `index`'s watermark to it; returns entries applied."""
        return replay_log(index, self.catalog, batch, self.on_applied, self._follow)

    def _follow(self, before: int, changes: VectorChanges) -> None:
        """Apply a stretch the index replayed (from `before`) to the filter bitmaps when
        it covers their next entry; stretches they hold already are skipped."""
        filters = self.filters
        if filters is not None and before <= filters.watermark < changes.head:
            filters.apply(self.catalog, changes)

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
        self.index = self._adopt(fresh)
        self._dirty = False
        self._last_save = time.monotonic()
        return True

    def _adopt(self, fresh: VectorIndex) -> VectorIndex:
        """The index to search after a rebuild saved `fresh` (a mapped LiveIndex maps it)."""
        return fresh

    def save(self, *, force: bool = False, changed: bool = False) -> bool:
        """Snapshot when dirty and due (or forced); returns whether it saved.

        `changed` marks the index dirty first (its parameters changed, e.g. by tuning)."""
        self._dirty = self._dirty or changed
        if not self._dirty or not (force or self._save_due()):
            return False
        with self._sync_lock:
            saved = self._snapshot()
            self._dirty = not saved
            self._last_save = time.monotonic()
        return saved

    def _save_due(self) -> bool:
        return time.monotonic() - self._last_save >= self.save_interval_s

    def _snapshot(self) -> bool:
        """Save the index; returns whether nothing is left to save. (A save dropped because
        the saved index is further along the log leaves nothing: that one holds every
        change this one has.)"""
        self.index.save()
        return True

    def describe(self) -> dict[str, Any]:
        described = self.index.describe()
        if self.filters is not None:
            described = {**described, "filter_bitmaps": self.filters.describe()}
        return described


def replay_log(
    index: VectorIndex,
    catalog: Catalog,
    batch: int = 100_000,
    on_applied: Callable[[np.ndarray], None] | None = None,
    on_changes: Callable[[int, VectorChanges], None] | None = None,
) -> int:
    """Apply the catalog's log after `index`'s watermark to it; returns entries applied.
    `on_applied` gets the commit times of each stretch applied (freshness metrics);
    `on_changes` each stretch with the watermark it was read after (the filter bitmaps)."""
    applied = 0
    while True:
        changes = catalog.changes_since(index.meta.watermark, batch, index.meta.model_id)
        if changes.head == index.meta.watermark:
            return applied
        if index.shared:
            # Upserts: an add replaces a row of the same id, and metadata updates
            # rewrite the filterable fields stored beside the vector.
            index.remove(changes.remove_ids)
            ids = np.concatenate([changes.add_ids, changes.update_ids])
            if len(ids):
                vectors = [v for v in (changes.add_vectors, changes.update_vectors) if v.size]
                index.add(ids, np.concatenate(vectors))
        else:
            # Removing the ids about to be added makes replaying an entry idempotent.
            stale = np.union1d(changes.remove_ids, changes.add_ids)
            index.remove(stale)
            if len(changes.add_ids):
                index.add(changes.add_ids, changes.add_vectors)
        applied += changes.head - index.meta.watermark
        if on_changes is not None:
            on_changes(index.meta.watermark, changes)
        index.meta.watermark = changes.head
        if on_applied is not None and len(changes.commit_times):
            on_applied(changes.commit_times)


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
    if not index.shared:
        # The copy may hold writes made after the head it started from: replaying them
        # (idempotent) leaves exactly the entries of the new watermark, so the index and
        # its watermark belong together when it is saved.
        replay_log(index, catalog)
    log.info("rebuilt %s index with %d vectors", index.meta.kind, len(index))
    return index
