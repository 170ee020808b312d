"""What a server does in the background, each `housekeeping_interval_s`: deletes search
logs past their retention and uploaded images no product uses any more."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.catalog import Catalog
from lookalike.config import Settings
from lookalike.ingest.media import MediaStore
from lookalike.quality.retention import Pruned, prune_logs


@dataclass(frozen=True)
class Housekeeping:
    """What one round deleted."""

    pruned: Pruned
    media_deleted: int


def housekeep(
    catalog: Catalog, media: MediaStore, settings: Settings, *, now: float | None = None
) -> Housekeeping:
    """One round (any process sharing the catalog may run it; twice is harmless)."""
    pruned = prune_logs(catalog, settings.search_log_retention_days, now=now)
    return Housekeeping(pruned, media.sweep())
