"""What every shared index (one store on a server, written by the catalog's writers) keeps
the same way: its record in the catalog's meta, and its size, which is a query."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from lookalike.catalog.base import Catalog
from lookalike.errors import IndexMismatch

log = logging.getLogger(__name__)


class CatalogRecord:
    """The layout a shared store was built with and the watermark all its writers share,
    under one key of the catalog's meta: whoever opens the store reads there whether this
    catalog built it, how, and from where to replay the change log."""

    def __init__(self, catalog: Catalog, key: str, layout: dict[str, Any]) -> None:
        self.catalog = catalog
        self.key = key
        self.layout = layout

    def read(self) -> dict[str, Any] | None:
        """`{"layout": ..., "watermark": ...}`, or None when this catalog has not built it."""
        raw = self.catalog.get_meta(self.key)
        return json.loads(raw) if raw else None

    def write(self, watermark: int) -> None:
        record = {"layout": self.layout, "watermark": int(watermark)}
        self.catalog.set_meta(self.key, json.dumps(record, sort_keys=True))

    def adopt(self, name: str, exists: bool, *, foreign: str) -> int | None:
        """The recorded watermark when the store `name` exists as this catalog built it;
        None when it is to be created: missing, or built with another layout (the caller
        drops it, then creates it). A store that this catalog never recorded is not adopted
        (nor dropped): IndexMismatch, with `foreign` saying what to do."""
        record = self.read()
        if exists and record is None:
            raise IndexMismatch(f"{name} exists but this catalog did not build it; {foreign}")
        if not exists or record is None:
            return None
        if record.get("layout") != self.layout:
            log.warning(
                "%s was built as %s, now %s: rebuilding it from the catalog",
                name,
                record.get("layout"),
                self.layout,
            )
            return None
        return int(record["watermark"])

    def watermark(self) -> int:
        """The watermark every writer shares: every log entry up to it has been applied."""
        record = self.read()
        return int(record["watermark"]) if record else 0

    def advance(self, watermark: int) -> None:
        """Record `watermark` unless a writer has recorded a later one."""
        if watermark > self.watermark():
            self.write(watermark)


class CachedCount:
    """A store's size, counted at most every `ttl_s`: a search asks twice (model check,
    total found), and other replicas' writes show within that time."""

    def __init__(self, count: Callable[[], int], ttl_s: float = 0.25) -> None:
        self._count = count
        self._ttl_s = ttl_s
        self._cached: tuple[float, int] | None = None  # (when, rows)

    def __call__(self) -> int:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        count = self._count()
        self._cached = (time.monotonic(), count)
        return count

    def clear(self) -> None:
        """Count again next time (after this process wrote)."""
        self._cached = None
