"""Search and click logging off the request path: records queue up in memory and a
background thread writes them to the catalog in batches (one transaction per second at
most), so a busy server adds one small write a second to the catalog, not one per search.

A search is findable (`results_of`) from the moment it is recorded: from the queue until
its batch commits, from the catalog after, so a click that arrives before its search is
written is still checked against it."""

from __future__ import annotations

import logging
import queue
import threading

from lookalike.catalog import Catalog, ClickRecord, SearchRecord
from lookalike.errors import LookalikeError

log = logging.getLogger(__name__)

MAX_QUEUED = 100_000  # beyond this, records are dropped (and counted) rather than kept


class SearchLogger:
    """Writes through `catalog` (any backend); the caller keeps owning the catalog."""

    def __init__(self, catalog: Catalog, *, flush_interval_s: float = 1.0) -> None:
        self.catalog = catalog
        self.flush_interval_s = flush_interval_s
        self.dropped = 0
        self._queue: queue.Queue[SearchRecord | ClickRecord] = queue.Queue(MAX_QUEUED)
        # Searches queued but not yet written: bounded by the queue itself.
        self._unwritten: dict[str, tuple[str, ...]] = {}
        self._unwritten_lock = threading.Lock()
        self._flushed = threading.Condition()
        self._wanted = 0  # flush requests made
        self._done = 0  # flush requests served
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="search-log", daemon=True)
        self._thread.start()

    def record(self, record: SearchRecord | ClickRecord) -> None:
        """Queue a record; never blocks the caller."""
        search = record if isinstance(record, SearchRecord) else None
        if search is not None:  # before it is queued: the writer may take it at once
            with self._unwritten_lock:
                self._unwritten[search.search_id] = search.product_ids
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if search is not None:
                with self._unwritten_lock:
                    self._unwritten.pop(search.search_id, None)

    def results_of(self, search_id: str) -> tuple[str, ...] | None:
        """The product ids a logged search returned (queued here or written to the
        catalog by any process sharing it); None for a search nobody logged. Blocking."""
        with self._unwritten_lock:
            queued = self._unwritten.get(search_id)
        if queued is not None:
            return queued
        return self.catalog.search_results(search_id)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until everything recorded so far is written."""
        with self._flushed:
            self._wanted += 1
            ticket = self._wanted
            self._wake.set()
            self._flushed.wait_for(lambda: self._done >= ticket, timeout=timeout_s)

    def close(self) -> None:
        """Write what is queued and stop (the catalog stays open)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            with self._flushed:
                wanted = self._wanted
            self._write_queued()
            with self._flushed:
                self._done = wanted
                self._flushed.notify_all()
            if self._stop.is_set():
                return

    def _write_queued(self) -> None:
        searches: list[SearchRecord] = []
        clicks: list[ClickRecord] = []
        while True:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                break
            (searches if isinstance(record, SearchRecord) else clicks).append(record)
        if not (searches or clicks):
            return
        try:
            self.catalog.write_search_logs(searches, clicks)
        except LookalikeError as exc:  # logs must never take the server down
            log.warning(
                "dropped %d search and %d click records: %s", len(searches), len(clicks), exc
            )
        finally:
            # Written (findable in the catalog now) or dropped (never logged): either way
            # no longer waiting here.
            with self._unwritten_lock:
                for search in searches:
                    self._unwritten.pop(search.search_id, None)
