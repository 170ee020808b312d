"""A LiveIndex whose index is mapped from the saved file that every process on the machine
shares (`MappedIndex`), for `lookalike serve --workers N`.

Besides replaying the change log like any LiveIndex, it
- maps a newer snapshot when another process saved one (a fold, a rebuild, a CLI run):
  its private delta is dropped and the log replayed from the new snapshot's watermark;
- folds its delta into a new snapshot when the delta passes `fold_at` entries, or when the
  saved file is older than the save interval (the file's age, not this process's last
  save: one fold per interval serves every worker, since the others map it);
- lets one process at a time rebuild an outgrown index (the others map the result).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, cast

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import IndexMismatch
from lookalike.files.lock import try_exclusive_lock
from lookalike.index.base import VectorIndex
from lookalike.index.faiss_index import FaissIndex
from lookalike.index.live import LiveIndex
from lookalike.index.mapped import FOLD_LOCK, MappedIndex
from lookalike.index.persist import META_FILE, saved_meta

log = logging.getLogger(__name__)

MappedLoader = Callable[[], MappedIndex | None]


def maps_index(settings: Settings) -> bool:
    """Whether processes with these settings map the saved index instead of copying it."""
    if settings.index_memory == "auto":
        return settings.workers > 1
    return settings.index_memory == "mapped"


class MappedLiveIndex(LiveIndex):
    index: MappedIndex

    def __init__(
        self,
        index: MappedIndex,
        catalog: Catalog,
        *,
        loader: MappedLoader,
        fold_at: int = 10_000,
        **options: Any,
    ) -> None:
        super().__init__(index, catalog, **options)
        if index.directory is None:
            raise IndexMismatch("a mapped index needs the directory it was saved in")
        self.directory = index.directory
        self.loader = loader
        self.fold_at = fold_at
        self._seen = self._pointer_stamp()

    def _pointer_stamp(self) -> tuple[int, int, float] | None:
        """Changes whenever a save replaces the pointer (a new inode, by os.replace)."""
        try:
            stat = os.stat(self.directory / META_FILE)
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_mtime

    def _refresh(self) -> None:
        stamp = self._pointer_stamp()
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            saved = saved_meta(self.directory)
        except IndexMismatch as exc:
            log.warning("keeping the mapped index: %s", exc)
            return
        if saved is None or saved.snapshot == self.index.snapshot:
            return
        fresh = self.loader()
        if fresh is None:
            return
        self._replay(fresh)  # from the new snapshot's watermark
        self.index = fresh
        log.info("mapped index snapshot %d (log entry %d)", fresh.snapshot, fresh.meta.watermark)

    def _save_due(self) -> bool:
        if self.index.delta_size >= self.fold_at:
            return True
        stamp = self._pointer_stamp()
        age = time.time() - stamp[2] if stamp else float("inf")
        return age >= self.save_interval_s

    def _snapshot(self) -> bool:
        return self.index.fold() or not self.index.changed

    def _maintain(self) -> bool:
        if self.maintainer is None or self.maintainer.review(self.index) is None:
            return False
        with try_exclusive_lock(self.directory / FOLD_LOCK) as mine:
            if not mine:
                return False  # another process is rebuilding or folding: map its result
            self._refresh()  # it may have just saved a rebuilt index
            return super()._maintain()

    def _adopt(self, fresh: VectorIndex) -> VectorIndex:
        mapped = self.loader()
        if mapped is None:  # not loadable as saved: search the private copy meanwhile
            mapped = MappedIndex(cast(FaissIndex, fresh))
        self._replay(mapped)
        self._seen = self._pointer_stamp()
        return mapped
