"""Built-in index backends, registered with the factory: FAISS files, Milvus and pgvector
(`index/pgvector.py` registers itself when imported here)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from lookalike.catalog.base import Catalog
from lookalike.catalog.filter_bitmaps import FilterBitmaps
from lookalike.config import Settings
from lookalike.errors import ConfigError
from lookalike.index import pgvector  # noqa: F401 - registers itself; psycopg loads on open
from lookalike.index.factory import index_directory, register_index
from lookalike.index.live import LiveIndex, rebuild_from_catalog

if TYPE_CHECKING:
    from lookalike.index.planner import IndexPlanner

log = logging.getLogger(__name__)


def _open_faiss(
    settings: Settings, catalog: Catalog, dim: int, model_id: str, progress: bool
) -> LiveIndex:
    """Load the saved index when it fits, else rebuild it from stored embeddings; then catch up."""
    from lookalike.index.mapped_live import maps_index
    from lookalike.index.planner import index_planner

    planner = index_planner(settings, catalog, dim, model_id)
    if maps_index(settings):
        return _open_mapped(settings, catalog, planner, progress)
    index = planner.load() or planner.rebuild(progress=progress)
    options = _live_options(settings, catalog, model_id, progress)
    live = LiveIndex(index, catalog, maintainer=planner, **options)
    live.catch_up()
    live.maintain()  # e.g. tombstones piled up before the last save
    return live


def _open_mapped(
    settings: Settings, catalog: Catalog, planner: IndexPlanner, progress: bool
) -> LiveIndex:
    """The saved index mapped read-only (built and saved first when missing or unfit)."""
    from lookalike.files.lock import exclusive_lock
    from lookalike.index.mapped import FOLD_LOCK, MappedIndex
    from lookalike.index.mapped_live import MappedLiveIndex

    # Workers start together: one builds a missing index while the others wait to map it.
    with exclusive_lock(planner.directory / FOLD_LOCK):
        index = planner.load_mapped()
        if index is None:
            built = planner.rebuild(progress=progress)
            index = planner.load_mapped() or MappedIndex(built)
    # Each worker keeps its own filter bitmaps, in step with its own replay of the log.
    options = _live_options(settings, catalog, planner.model_id, progress)
    live = MappedLiveIndex(
        index,
        catalog,
        loader=planner.load_mapped,
        fold_at=settings.index_delta_max,
        maintainer=planner,
        **options,
    )
    live.catch_up()
    live.maintain()
    return live


def _live_options(
    settings: Settings, catalog: Catalog, model_id: str, progress: bool
) -> dict[str, Any]:
    """What every in-process FAISS LiveIndex is opened with."""
    filters = None
    if settings.filter_bitmaps:
        filters = FilterBitmaps.from_catalog(
            catalog, model_id, max_values=settings.filter_bitmap_max_values
        )
    return {
        "save_interval_s": settings.index_save_interval_s,
        "progress": progress,
        "filters": filters,
    }


def _describe_faiss(settings: Settings) -> dict[str, Any]:
    from lookalike.index.persist import saved_meta

    directory = index_directory(settings)
    meta = saved_meta(directory)
    if meta is None:
        return {"type": None, "path": str(directory)}
    return {"type": meta.kind, "dim": meta.dim, "watermark": meta.watermark, "params": meta.params}


def _open_milvus(
    settings: Settings, catalog: Catalog, dim: int, model_id: str, progress: bool
) -> LiveIndex:
    """The Milvus collection: created and filled from stored embeddings when new, then the
    log replayed from the watermark all writers share."""
    try:
        from lookalike.index.base import IndexMeta
        from lookalike.index.milvus import MilvusConfig, MilvusIndex
    except ImportError as exc:
        raise ConfigError(
            f"LOOKALIKE_INDEX_URL needs `pip install lookalike[milvus]` ({exc})"
        ) from exc
    index = MilvusIndex(
        IndexMeta("milvus", dim, model_id), MilvusConfig.from_settings(settings), catalog
    )
    if index.created:
        rebuild_from_catalog(index, catalog, progress=progress)
        index.flush()
        index.save()
    live = LiveIndex(index, catalog, save_interval_s=settings.index_save_interval_s)
    live.apply_writes()
    return live


def _describe_milvus(settings: Settings) -> dict[str, Any]:
    from lookalike.redact import redact_url

    return {
        "type": "milvus",
        "params": {
            "uri": redact_url(settings.index_url or ""),
            "collection": settings.milvus_collection,
        },
    }


register_index("faiss", "path", "file")((_open_faiss, _describe_faiss))
register_index("milvus", "milvus", "http", "https", "tcp", "unix", "db-path")(
    (_open_milvus, _describe_milvus)
)
