"""Pick, open or rebuild the vector index the settings ask for."""

from __future__ import annotations

import logging
from pathlib import Path

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import ConfigError, IndexMismatch
from lookalike.index.base import IndexMeta, VectorIndex
from lookalike.index.faiss_index import FaissIndex, FlatIndex, saved_kind
from lookalike.index.live import LiveIndex, rebuild_from_catalog

log = logging.getLogger(__name__)

FAISS_FAMILIES: dict[str, type[FaissIndex]] = {"flat": FlatIndex}


def index_directory(settings: Settings) -> Path:
    return settings.data_dir / "index"


def resolve_kind(settings: Settings, catalog_size: int) -> str:
    """The FAISS family for this catalog. `auto` is exact until a larger family lands."""
    kind = settings.index_type
    if kind == "auto":
        return "flat"
    if kind not in FAISS_FAMILIES:
        raise ConfigError(f"index type {kind!r} is not available; known: {sorted(FAISS_FAMILIES)}")
    return kind


def open_index(
    settings: Settings, catalog: Catalog, dim: int, model_id: str, *, progress: bool = False
) -> LiveIndex:
    """Load the saved index when it fits, else rebuild it from stored embeddings; then catch up."""
    if settings.index_url:
        return open_shared_index(settings, catalog, dim, model_id, progress=progress)
    directory = index_directory(settings)
    kind = resolve_kind(settings, catalog.stats().searchable)
    family = FAISS_FAMILIES[kind]
    index: VectorIndex | None = None
    if saved_kind(directory) == kind:
        try:
            index = family.load(directory)
            if (index.meta.dim, index.meta.model_id) != (dim, model_id):
                raise IndexMismatch(
                    f"saved index holds model {index.meta.model_id} (dim {index.meta.dim}), "
                    f"the encoder is {model_id} (dim {dim})"
                )
        except IndexMismatch as exc:
            log.warning("rebuilding the index: %s", exc)
            index = None
    if index is None:
        index = rebuild_from_catalog(
            family(IndexMeta(kind, dim, model_id), directory), catalog, progress=progress
        )
        index.save()
    live = LiveIndex(index, catalog, save_interval_s=settings.index_save_interval_s)
    live.catch_up()
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
