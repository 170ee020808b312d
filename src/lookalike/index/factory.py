"""Pick, open or rebuild the vector index the settings ask for."""

from __future__ import annotations

import logging
from pathlib import Path

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import ConfigError
from lookalike.index.base import IndexMeta
from lookalike.index.families import FAISS_FAMILIES
from lookalike.index.live import LiveIndex, rebuild_from_catalog
from lookalike.index.planner import IndexPlanner, choose_kind

log = logging.getLogger(__name__)

__all__ = ["FAISS_FAMILIES", "index_directory", "index_planner", "open_index", "resolve_kind"]


def index_directory(settings: Settings) -> Path:
    return settings.data_dir / "index"


def resolve_kind(settings: Settings, catalog_size: int, current: str | None = None) -> str:
    """The FAISS family for a catalog of this size (`auto` goes by the size thresholds)."""
    return choose_kind(settings, catalog_size, current)


def index_planner(settings: Settings, catalog: Catalog, dim: int, model_id: str) -> IndexPlanner:
    """The planner that builds, loads and reviews this data directory's index."""
    return IndexPlanner(settings, catalog, dim, model_id, index_directory(settings))


def open_index(
    settings: Settings, catalog: Catalog, dim: int, model_id: str, *, progress: bool = False
) -> LiveIndex:
    """Load the saved index when it fits, else rebuild it from stored embeddings; then catch up."""
    if settings.index_url:
        return open_shared_index(settings, catalog, dim, model_id, progress=progress)
    planner = index_planner(settings, catalog, dim, model_id)
    index = planner.load()
    if index is None:
        plan = planner.plan()
        log.info("building the index: %s", plan.describe())
        index = planner.build(plan, progress=progress)
        index.save()
    live = LiveIndex(
        index,
        catalog,
        save_interval_s=settings.index_save_interval_s,
        maintainer=planner,
        progress=progress,
    )
    live.catch_up()
    live.maintain()  # e.g. tombstones piled up before the last save
    return live


def open_shared_index(
    settings: Settings, catalog: Catalog, dim: int, model_id: str, *, progress: bool = False
) -> LiveIndex:
    """The vector database at LOOKALIKE_INDEX_URL (Milvus): create and fill its collection
    from stored embeddings when new, then replay what the last writers did not apply."""
    try:
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
