"""Which FAISS family a catalog gets, with which parameters, and when to rebuild it.

`auto` follows catalog size: exact search while it is cheap, HNSW up to about a million
vectors, IVF-PQ beyond (the thresholds are settings; benchmarks/README.md shows where they
come from). A catalog that grows past a threshold is rebuilt as the next family; one that
shrinks keeps its family until it is below half the threshold, so it does not flip back
and forth. Builds read the stored embeddings (no re-encoding) and train IVF-PQ on a sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog.base import Catalog, ProductFilter
from lookalike.config import Settings
from lookalike.errors import ConfigError, IndexMismatch
from lookalike.index.base import IndexMeta, VectorIndex
from lookalike.index.faiss_index import FaissIndex, VectorSource, saved_kind
from lookalike.index.families import FAISS_FAMILIES, SIZE_ORDER
from lookalike.index.ivfpq import IvfPqIndex, sub_quantizers
from lookalike.index.live import rebuild_from_catalog
from lookalike.index.mapped import MappedIndex

log = logging.getLogger(__name__)

# An IVF-PQ index trained on a catalog this many times smaller is retrained.
RETRAIN_GROWTH = 4
# Settings that override a search knob stored with the index, when set explicitly.
KNOB_SETTINGS = {
    "hnsw": {"hnsw_ef_search": "ef_search"},
    "ivfpq": {"ivfpq_nprobe": "nprobe", "ivfpq_rerank": "rerank"},
}


def choose_kind(settings: Settings, size: int, current: str | None = None) -> str:
    """The family for a catalog of `size` vectors, given the family it has now (if any)."""
    kind = settings.index_type
    if kind == "auto":
        kind = _auto_kind(settings, size, current)
    elif kind not in FAISS_FAMILIES:
        raise ConfigError(f"index type {kind!r} is not available; known: {sorted(FAISS_FAMILIES)}")
    if kind == "ivfpq" and size < IvfPqIndex.min_vectors({"nbits": settings.ivfpq_nbits}):
        return "flat"  # too few vectors to train codebooks: exact search serves meanwhile
    return kind


def _auto_kind(settings: Settings, size: int, current: str | None) -> str:
    thresholds = {"hnsw": settings.index_auto_hnsw_at, "ivfpq": settings.index_auto_ivfpq_at}
    target = "flat"
    for kind in ("hnsw", "ivfpq"):
        if size >= thresholds[kind]:
            target = kind
    if (
        current in thresholds
        and SIZE_ORDER.index(current) > SIZE_ORDER.index(target)
        and size >= thresholds[current] // 2
    ):
        return current
    return target


@dataclass
class IndexPlan:
    """What a build will make: printed (with the memory estimate) before building."""

    kind: str
    vectors: int
    params: dict[str, Any] = field(default_factory=dict)
    memory_bytes: int = 0

    def describe(self) -> str:
        shown = {k: v for k, v in self.params.items() if k != "tuned"}
        return (
            f"{self.kind} index for {self.vectors} vectors {shown}: "
            f"about {self.memory_bytes / 2**20:,.0f} MiB"
        )


class IndexPlanner:
    """Plans, builds, loads and reviews the FAISS index of one catalog and model."""

    def __init__(
        self, settings: Settings, catalog: Catalog, dim: int, model_id: str, directory: Path
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.dim = dim
        self.model_id = model_id
        self.directory = directory

    def vectors(self) -> VectorSource:
        """Stored float vectors by id, for exact re-ranking."""
        catalog, model_id = self.catalog, self.model_id
        return lambda ids: catalog.embeddings_by_vector_ids(ids, model_id)

    def catalog_size(self) -> int:
        return int(self.catalog.stats().models.get(self.model_id, 0))

    # --- planning ------------------------------------------------------------------------
    def plan(
        self, kind: str | None = None, *, size: int | None = None, previous: Any = None
    ) -> IndexPlan:
        """Family and parameters for the catalog as it is now."""
        size = self.catalog_size() if size is None else size
        current = getattr(previous, "kind", None)
        kind = kind or choose_kind(self.settings, size, current)
        params = self._params(kind, size)
        if previous is not None and current == kind:
            # A rebuild of the same family keeps its tuned search knobs.
            old = previous.meta.params
            params.update(
                {k: old[k] for k in (*FAISS_FAMILIES[kind].search_knobs, "tuned") if k in old}
            )
        params.update(self._overrides(kind))
        family = FAISS_FAMILIES[kind]
        return IndexPlan(kind, size, params, family.estimate_bytes(size, self.dim, params))

    def _params(self, kind: str, size: int) -> dict[str, Any]:
        s = self.settings
        if kind == "hnsw":
            return {
                "m": s.hnsw_m,
                "ef_construction": s.hnsw_ef_construction,
                "ef_search": s.hnsw_ef_search,
            }
        if kind == "ivfpq":
            return {
                "nlist": s.ivfpq_nlist or IvfPqIndex.nlist_for(size),
                "m": sub_quantizers(self.dim, s.ivfpq_m),
                "nbits": s.ivfpq_nbits,
                "nprobe": s.ivfpq_nprobe,
                "rerank": s.ivfpq_rerank,
                "built_at": size,
            }
        return {}

    def _overrides(self, kind: str) -> dict[str, Any]:
        """Search knobs set explicitly in the settings win over stored (tuned) ones."""
        chosen = self.settings.model_fields_set
        return {
            knob: getattr(self.settings, name)
            for name, knob in KNOB_SETTINGS.get(kind, {}).items()
            if name in chosen
        }

    # --- building and loading ------------------------------------------------------------
    def build(self, plan: IndexPlan | None = None, *, progress: bool = False) -> FaissIndex:
        """A new index filled from the stored embeddings (trained first when it needs it)."""
        plan = plan or self.plan()
        family = FAISS_FAMILIES[plan.kind]
        meta = IndexMeta(plan.kind, self.dim, self.model_id, params=dict(plan.params))
        meta.catalog_id = self.catalog.get_meta("catalog_id")
        index = family(meta, self.directory, vectors=self.vectors())
        index.threads = self.settings.search_threads
        if isinstance(index, IvfPqIndex):
            index.train(self.training_sample(index.training_size()))
        rebuild_from_catalog(index, self.catalog, progress=progress)
        return index

    def rebuild(self, *, progress: bool = False) -> FaissIndex:
        """A new index as planned now, built from the stored embeddings and saved."""
        plan = self.plan()
        log.info("building the index: %s", plan.describe())
        index = self.build(plan, progress=progress)
        index.save()
        return index

    def training_sample(self, count: int, seed: int = 0) -> np.ndarray:
        """Up to `count` stored embeddings of this model, drawn at random."""
        ids = self.catalog.filter_vector_ids(ProductFilter())
        rng = np.random.default_rng(seed)
        # A little extra: ids embedded by another model drop out of the lookup.
        picked = rng.choice(ids, size=min(len(ids), int(count * 1.1) + 1), replace=False)
        found = self.catalog.embeddings_by_vector_ids(np.sort(picked), self.model_id)
        if not found:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(list(found.values())[:count]).astype(np.float32)

    def load(self, *, mapped: bool = False) -> FaissIndex | None:
        """The saved index when it is the family this catalog should have and belongs to
        it, else None (it must be rebuilt). `mapped`: read-only from its file."""
        try:
            saved = saved_kind(self.directory)
            if saved is None or saved not in FAISS_FAMILIES:
                return None
            if choose_kind(self.settings, self.catalog_size(), saved) != saved:
                return None
            index = FAISS_FAMILIES[saved].load(
                self.directory, vectors=self.vectors(), mapped=mapped
            )
            self._check_belongs(index.meta)
        except IndexMismatch as exc:
            log.warning("rebuilding the index: %s", exc)
            return None
        index.meta.params.update(self._overrides(saved))
        index.threads = self.settings.search_threads
        return index

    def load_mapped(self) -> MappedIndex | None:
        """The saved index mapped read-only, with an empty delta; None as for `load`."""
        index = self.load(mapped=True)
        return MappedIndex(index) if index is not None else None

    def _check_belongs(self, meta: IndexMeta) -> None:
        """The saved index is of this model and this catalog, and not ahead of its log."""
        if (meta.dim, meta.model_id) != (self.dim, self.model_id):
            raise IndexMismatch(
                f"saved index holds model {meta.model_id} (dim {meta.dim}), "
                f"the encoder is {self.model_id} (dim {self.dim})"
            )
        catalog_id = self.catalog.get_meta("catalog_id")
        if meta.catalog_id is None:
            meta.catalog_id = catalog_id  # saved before indexes recorded it: adopted
        elif meta.catalog_id != catalog_id:
            raise IndexMismatch(
                f"saved index belongs to catalog {meta.catalog_id}, not this one ({catalog_id})"
            )
        head = self.catalog.log_head()
        if meta.watermark > head:
            # A catalog restored from an older backup: the log cannot be replayed backwards.
            raise IndexMismatch(
                f"saved index is at log entry {meta.watermark}, past the catalog's {head}"
            )

    # --- upkeep --------------------------------------------------------------------------
    def review(self, index: VectorIndex) -> str | None:
        """Why `index` should be rebuilt now (grown past its family, too many deletes), or None."""
        if not isinstance(index, FaissIndex | MappedIndex):
            return None
        size = len(index)
        kind = choose_kind(self.settings, size, index.kind)
        if kind != index.kind:
            return f"the catalog has {size} vectors: {index.kind} -> {kind}"
        if index.stale_fraction > self.settings.index_compact_fraction:
            return f"{index.stale_fraction:.0%} of the index is deleted entries: compacting"
        built_at = int(index.meta.params.get("built_at", 0))
        if kind == "ivfpq" and built_at and size > RETRAIN_GROWTH * built_at:
            return f"the catalog grew from {built_at} to {size} vectors: retraining"
        return None


def index_planner(settings: Settings, catalog: Catalog, dim: int, model_id: str) -> IndexPlanner:
    """The planner that builds, loads and reviews the data directory's FAISS index."""
    from lookalike.index.factory import index_directory

    return IndexPlanner(settings, catalog, dim, model_id, index_directory(settings))
