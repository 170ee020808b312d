"""VectorIndex protocol: int64 ids, inner product on L2-normalised float32 vectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lookalike.catalog.base import ProductFilter


@dataclass(frozen=True)
class IndexCapabilities:
    """What a vector index can do, declared by each backend; search plans read these, never
    an index's name."""

    shared: bool = False  # one store that every process reads and the catalog's writers write
    filter_pushdown: bool = False  # evaluates a ProductFilter itself (FilteringIndex)
    exact_filtered: bool = False  # `search(allowed_ids=...)` is exact, whatever the subset
    selector_scan: bool = False  # `search(allowed_ids=...)` scans only allowed ids, widening
    # its probes by 1/selectivity: a filter costs it no more recall than no filter
    max_k: int | None = None  # most results one query may ask for (None: no limit)
    # `search(allowed_ids=...)` is exact when the allowed ids are at most this share of the
    # entries (HNSW scores so small a subset by brute force over its stored vectors)
    exact_subset_share: float = 0.0


@dataclass
class IndexMeta:
    """Saved with an index; what it holds and how far into the catalog log it is."""

    kind: str
    dim: int
    model_id: str | None = None
    watermark: int = 0  # last catalog change-log sequence applied
    params: dict[str, Any] = field(default_factory=dict)
    format_version: int = 2
    # The catalog whose log the watermark counts (its `catalog_id` meta); None in indexes
    # saved before it was recorded.
    catalog_id: str | None = None
    # Which saved file holds the index (`index-<snapshot>.faiss`); 0: the one file of the
    # first layout, `index.faiss`.
    snapshot: int = 0


@runtime_checkable
class VectorIndex(Protocol):
    """Implemented by FAISS flat/HNSW/IVF-PQ and by external engines.

    `shared` indexes (a vector database server) are written by whoever writes the catalog
    and read by everyone; local ones are private snapshots each process keeps in sync by
    replaying the catalog change log.
    """

    meta: IndexMeta
    capabilities: IndexCapabilities

    @property
    def shared(self) -> bool:
        """A server-side store (see `IndexCapabilities.shared`)."""
        ...

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new ids (callers `remove` an id first to replace it; an id
        removed and then added again must be live)."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones are ignored); returns how many were present."""
        ...

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: (scores (q, k) float32, ids (q, k) int64), padded with -1 ids.

        `allowed_ids` (sorted int64) restricts the search to those ids.
        """
        ...

    def save(self) -> None:
        """Persist atomically (no-op for server-side engines)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Type, size, parameters, memory: what `lookalike info` prints."""
        ...


@runtime_checkable
class FilteringIndex(Protocol):
    """An index that evaluates product filters itself (a vector database that stores the
    filterable fields beside each vector) instead of taking the catalog's allowed ids."""

    def supports_filter(self, product_filter: ProductFilter) -> bool:
        """Whether every condition of the filter can be evaluated inside the index."""
        ...

    def search_filtered(
        self, queries: np.ndarray, k: int, product_filter: ProductFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among vectors whose products match the filter; same shapes as `search`."""
        ...


@runtime_checkable
class SharedIndex(Protocol):
    """A `shared` index records its watermark where every writer reads it (the catalog)."""

    def load_watermark(self) -> int:
        """The watermark all writers share: every log entry up to it has been applied."""
        ...
