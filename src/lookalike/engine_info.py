"""What `lookalike info` and the API's `/v1/info` report about a running engine: the
catalog, the index and cache backends, the model, freshness and the event source. Reads
stored state only: never loads the model."""

from __future__ import annotations

import time
from typing import Any

from lookalike.catalog import Catalog
from lookalike.config import Settings
from lookalike.encode import model_source
from lookalike.ingest.event_sources import describe_events


def describe_engine(
    settings: Settings,
    catalog: Catalog,
    index: dict[str, Any],
    cache: dict[str, Any],
    runtimes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The engine's description, given its index's and cache's own."""
    stats = catalog.stats()
    source = model_source(settings)
    stamp = stats.last_update
    return {
        "catalog": catalog.url,
        "products": stats.products,
        "searchable": stats.searchable,
        "embeddings_by_model": stats.models,
        "last_update": stamp and _iso(stamp),
        "log_head": stats.log_head,
        "index": index,
        "cache": cache,
        "model": {"source": source.kind, "name": source.display_name, "runtimes": runtimes},
        "data_dir": str(settings.data_dir.resolve()),
        "freshness": freshness(catalog, stats.log_head, index.get("watermark")),
        "events": describe_events(settings),
    }


def freshness(catalog: Catalog, head: int, watermark: int | None) -> dict[str, Any]:
    """When the catalog last committed a change, and how far the index is behind it."""
    last = catalog.commit_times([head]).get(head) if head else None
    out: dict[str, Any] = {"last_commit": last and _iso(last), "index_behind_s": None}
    if watermark is not None and watermark >= head:
        out["index_behind_s"] = 0.0
    elif watermark is not None:
        # Behind since the oldest change it lacks (the entry after its watermark).
        lacking = catalog.changes_since(watermark, limit=1).commit_times
        if len(lacking):
            out["index_behind_s"] = round(max(0.0, time.time() - float(lacking[0])), 3)
    return out


def _iso(stamp: float) -> str:
    return time.strftime("%FT%T%z", time.localtime(stamp))
