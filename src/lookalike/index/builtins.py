"""Built-in index backends, registered with the factory: FAISS files, Milvus and pgvector
(`index/pgvector.py` registers itself when imported here)."""

from __future__ import annotations

import logging
from typing import Any

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import ConfigError
from lookalike.index import pgvector  # noqa: F401 - registers itself; psycopg loads on open
from lookalike.index.factory import index_directory, register_index
from lookalike.index.live import LiveIndex, rebuild_from_catalog

log = logging.getLogger(__name__)


def _open_faiss(
    settings: Settings, catalog: Catalog, dim: int, model_id: str, progress: bool
) -> LiveIndex:
    """Load the saved index when it fits, else rebuild it from stored embeddings; then catch up."""
    from lookalike.index.planner import index_planner

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


def _describe_faiss(settings: Settings) -> dict[str, Any]:
    from lookalike.index.faiss_index import META_FILE
    from lookalike.index.persist import read_meta

    path = index_directory(settings) / META_FILE
    if not path.exists():
        return {"type": None, "path": str(path.parent)}
    meta = read_meta(path)
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
