"""How long search and click logs are kept: older rows are deleted by age."""

from __future__ import annotations

import time
from dataclasses import dataclass

from lookalike.catalog import Catalog

DAY_S = 86_400


@dataclass(frozen=True)
class Pruned:
    searches: int
    clicks: int
    before_ts: float  # rows logged before this Unix time were deleted


def prune_logs(catalog: Catalog, retention_days: float, *, now: float | None = None) -> Pruned:
    """Delete the searches and clicks logged more than `retention_days` ago (0 keeps them
    all); any process sharing the catalog may run it, at any time (deleting twice is a
    no-op)."""
    now = time.time() if now is None else now
    if retention_days <= 0:
        return Pruned(0, 0, 0.0)
    before = now - retention_days * DAY_S
    searches, clicks = catalog.prune_search_logs(before)
    return Pruned(searches, clicks, before)
