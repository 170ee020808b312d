"""Catalog protocol: products, their stored embeddings and the vector change log.

The catalog is the source of truth. Every embedding gets a fresh int64 `vector_id` (the
sequence number of its `add` entry in the change log); replacing or deleting it appends a
`remove` entry. An index is a derived snapshot that remembers the last log sequence it
applied (its watermark) and catches up by replaying the log, so a crash anywhere leaves
catalog and index consistent: the next open replays what the index missed.

Backends must append log entries in commit order (SQLite does, having one writer at a
time; a server database must serialise log appends) so a reader never skips an entry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lookalike.catalog.keys import ApiKey
from lookalike.catalog.logs import ClickRecord, DayTotals, SearchRecord


@dataclass
class Product:
    id: str
    title: str = ""
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    image_source: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    content_hash: str | None = None
    model_id: str | None = None
    vector_id: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def metadata_key(self) -> tuple:
        """What an ingest compares to decide whether only metadata changed."""
        return (
            self.title,
            self.category,
            self.brand,
            self.price,
            self.image_source,
            tuple(sorted((k, repr(v)) for k, v in self.attributes.items())),
        )


@dataclass
class ProductWrite:
    """One upsert. `embedding=None` updates metadata and keeps the stored vector."""

    product: Product
    embedding: np.ndarray | None = None


@dataclass(frozen=True)
class ProductFilter:
    """Conjunction of conditions; an empty tuple/None means "no condition"."""

    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    # attribute name -> allowed values (any of them)
    attributes: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (
            self.categories
            or self.brands
            or self.price_min is not None
            or self.price_max is not None
            or self.attributes
        )

    def matches(self, product: Product) -> bool:
        """Python reference semantics; the SQL of each backend must agree with it."""
        if self.categories and product.category not in self.categories:
            return False
        if self.brands and product.brand not in self.brands:
            return False
        if self.price_min is not None and (product.price is None or product.price < self.price_min):
            return False
        if self.price_max is not None and (product.price is None or product.price > self.price_max):
            return False
        return all(
            product.attributes.get(name) in allowed
            for name, allowed in self.attributes.items()
            if allowed  # an empty tuple is no condition, as for the other fields
        )


@dataclass
class VectorChanges:
    """Net effect of a stretch of the change log, ready to apply to an index."""

    remove_ids: np.ndarray  # int64
    add_ids: np.ndarray  # int64
    add_vectors: np.ndarray  # float32 (n, dim)
    head: int  # last sequence number covered
    # Vectors that stay but whose product metadata changed (for indexes that keep
    # filterable attributes beside the vectors; others ignore them).
    update_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    update_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    @property
    def is_empty(self) -> bool:
        return len(self.remove_ids) == 0 and len(self.add_ids) == 0 and len(self.update_ids) == 0


@dataclass
class CatalogStats:
    products: int
    searchable: int  # products with a stored embedding
    models: dict[str, int]  # model_id -> products embedded with it
    last_update: float | None
    log_head: int


@dataclass(frozen=True)
class CatalogCapabilities:
    """What a catalog backend offers, for the parts that choose how to use it."""

    # Servers on other machines can open the same catalog (a database server, not a file).
    shared_between_machines: bool
    # Several processes may write at once; the backend serialises them, never refuses one.
    concurrent_writers: bool


class Catalog(Protocol):
    """A product store; SQLite by default, PostgreSQL for servers."""

    url: str  # with any password redacted
    capabilities: CatalogCapabilities

    def describe(self) -> dict[str, Any]:
        """Backend name, redacted URL, schema (newest migration) and capabilities."""
        ...

    def upsert(self, writes: Sequence[ProductWrite]) -> None:
        """Insert or replace products (one transaction for the batch)."""
        ...

    def delete(self, product_ids: Sequence[str]) -> int:
        """Delete products; returns how many existed."""
        ...

    def get(self, product_id: str) -> Product:
        """The product, or NotFound."""
        ...

    def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]: ...

    def by_vector_ids(self, vector_ids: Sequence[int]) -> dict[int, Product]: ...

    def embedding(self, product_id: str) -> tuple[int, np.ndarray]:
        """(vector_id, embedding) of a searchable product, or NotFound."""
        ...

    def embeddings_by_vector_ids(
        self, vector_ids: Sequence[int], model_id: str | None = None
    ) -> dict[int, np.ndarray]:
        """Stored embeddings by vector id (only those made by `model_id`, when given)."""
        ...

    def log_head(self) -> int:
        """Sequence number of the newest change-log entry (0 when empty)."""
        ...

    def version(self) -> int:
        """A counter that moves with every committed product write (metadata-only changes
        and deletes included), never backwards: caches key results on it."""
        ...

    def changes_since(
        self, seq: int, limit: int = 100_000, model_id: str | None = None
    ) -> VectorChanges:
        """Net vector changes after `seq`, at most `limit` log entries. With `model_id`,
        vectors of other models count as removed: an index holds one model's space."""
        ...

    def iter_embeddings(
        self, batch_size: int = 10_000, model_id: str | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All current (vector_ids, embeddings) in blocks, for rebuilding an index."""
        ...

    def iter_products(self, batch_size: int = 1_000) -> Iterator[Product]:
        """Every product, in insertion order."""
        ...

    def filter_vector_ids(self, product_filter: ProductFilter) -> np.ndarray:
        """Sorted int64 vector ids of searchable products matching the filter."""
        ...

    def count_matching(self, product_filter: ProductFilter) -> int: ...

    def facets(self, limit: int = 50) -> dict[str, Any]:
        """Categories and brands with counts, and the price range (for filter UIs)."""
        ...

    def stats(self) -> CatalogStats: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def write_search_logs(
        self, searches: Sequence[SearchRecord], clicks: Sequence[ClickRecord]
    ) -> None:
        """Write a batch of search and click records in one transaction (a search logged
        twice is kept once)."""
        ...

    def daily_search_totals(self, since_ts: float) -> list[DayTotals]:
        """Sums of the search and click logs per UTC day from `since_ts` on, oldest first."""
        ...

    def add_api_key(self, key: ApiKey) -> None:
        """Store a new key (InvalidInput when its name is taken)."""
        ...

    def api_key(self, digest: str) -> ApiKey | None:
        """The key whose token has this SHA-256 digest, if any (one indexed lookup)."""
        ...

    def api_keys(self) -> list[ApiKey]:
        """Every key, by name."""
        ...

    def revoke_api_key(self, name: str) -> bool:
        """Delete the key called `name`; returns whether there was one."""
        ...

    def touch_api_key(self, digest: str, when: float) -> None:
        """Note when a key was last used."""
        ...

    def close(self) -> None: ...


def now() -> float:
    return time.time()
