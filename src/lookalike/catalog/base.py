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
from lookalike.catalog.logs import ClickRecord, DayTotals, LoggedSearch, SearchRecord
from lookalike.catalog.rankers import RankerPromotion, StoredRanker


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
    # Grows with every change of the product (see ProductWrite.version).
    version: int = 0

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


# An image's near-duplicate hashes (what `encode.phash.ImageHashes` holds): perceptual
# hash, mirror image's hash (unsigned 64-bit ints), the hashes of its sub-crop grid, its grey
# thumbnail (bytes) and the aspect ratio the thumbnail was squeezed from.
HashValues = tuple[int, int, tuple[int, ...], bytes, float]


@dataclass
class ProductWrite:
    """One upsert. `embedding=None` updates metadata and keeps the stored vector.

    `version`: the product's version after this write. A write whose version is not newer
    than the one stored (or left by a delete) is refused as stale; without one, the write
    takes the stored version plus one (API writes, batch ingest, unversioned events).
    `hashes`: the near-duplicate hashes of the image the embedding was made from
    (`HashValues`); a new embedding without them drops the stored ones."""

    product: Product
    embedding: np.ndarray | None = None
    version: int | None = None
    hashes: HashValues | None = None


@dataclass(frozen=True)
class WriteOutcome:
    """What a versioned write did: the products it changed and those it refused as stale
    (their version was not newer than the catalog's)."""

    changed: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()


@dataclass(frozen=True)
class HashRow:
    """A product's stored image hashes and near-duplicate group."""

    product_id: str
    vector_id: int
    phash: int  # unsigned 64-bit
    phash_mirror: int
    group_id: str | None
    crops: tuple[int, ...] = ()  # the sub-crop grid's hashes (empty: hashed before them)
    thumbnail: bytes = b""  # grey, square (empty: hashed before it)
    aspect: float = 1.0  # width / height the thumbnail was squeezed from


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
    # When the writes of this stretch committed (Unix seconds, one per transaction; entries
    # written before commit times were recorded have none): how fresh the index is.
    commit_times: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))

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

    def upsert(self, writes: Sequence[ProductWrite]) -> WriteOutcome:
        """Insert or replace products (one transaction for the batch); writes older than
        the stored version are refused (see ProductWrite.version)."""
        ...

    def delete(self, product_ids: Sequence[str]) -> int:
        """Delete products; returns how many existed. Each leaves a tombstone with its
        version (the stored one plus one)."""
        ...

    def delete_versions(self, versions: Mapping[str, int | None]) -> WriteOutcome:
        """Delete products at these versions (None: the stored one plus one), in one
        transaction. A delete not newer than the stored version is refused as stale; one of
        a product the catalog never had still leaves its tombstone, so that an older upsert
        arriving later cannot create it. `changed`: the products whose rows went."""
        ...

    def versions(self, product_ids: Sequence[str]) -> dict[str, int]:
        """The current version of each product that exists or was deleted (its tombstone)."""
        ...

    def commit_times(self, seqs: Sequence[int]) -> dict[int, float]:
        """When the change-log entries `seqs` were committed (Unix seconds), where recorded."""
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

    def image_sources(self, content_hashes: Sequence[str]) -> set[str]:
        """The image sources of the products whose content hash is one of these (who
        still points at a content-addressed file)."""
        ...

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

    def search_results(self, search_id: str) -> tuple[str, ...] | None:
        """The product ids a logged search returned, best first; None when no search with
        this id is logged (unknown, not written yet, or pruned)."""
        ...

    def prune_search_logs(self, before_ts: float) -> tuple[int, int]:
        """Delete searches and clicks logged before `before_ts`; returns how many of each."""
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

    def logged_searches(
        self,
        since_ts: float,
        until_ts: float,
        *,
        with_hits: bool = True,
        with_events_only: bool = False,
    ) -> list[LoggedSearch]:
        """Searches logged in [since_ts, until_ts), oldest first, with their events joined
        to the logged hits by product (and the hits with their features, `with_hits`);
        only those with at least one event (`with_events_only`)."""
        ...

    def erase_session(self, session: str) -> int:
        """Forget one (hashed) session: its searches, their hits and events. Returns how
        many searches went."""
        ...

    def save_ranker(self, version: str, manifest: dict[str, Any], model: str) -> None:
        """Store a learned ranker model (the same version twice must be the same model)."""
        ...

    def ranker(self, version: str) -> StoredRanker:
        """A stored ranker model, or NotFound."""
        ...

    def rankers(self) -> list[StoredRanker]:
        """Stored ranker models, newest first, without their model text."""
        ...

    def ranker_promotions(self) -> list[RankerPromotion]:
        """Every promotion, oldest first."""
        ...

    def promoted_ranker(self) -> str | None:
        """The version `LOOKALIKE_RANKER=learned` serves, or None."""
        ...

    def promote_ranker(self, version: str) -> None:
        """Serve this stored model from now on (NotFound if it is not stored)."""
        ...

    def rollback_ranker(self) -> str | None:
        """Undo the newest promotion in force; returns the version serving now (None: no
        learned model). NotFound when nothing is promoted."""
        ...

    # --- near-duplicates: image hashes and groups ---------------------------------------
    def image_hashes(
        self, *, after_vector_id: int = -1, product_ids: Sequence[str] | None = None
    ) -> list[HashRow]:
        """Stored hashes of current embeddings: of `product_ids`, or all whose vector id is
        above `after_vector_id`, by vector id."""
        ...

    def unhashed_products(
        self, limit: int = 1_000, after_vector_id: int = -1, *, crops: bool = False
    ) -> list[Product]:
        """Searchable products whose current image has no stored hashes (with `crops`: or
        none of its sub-crops), a backfill's work, by vector id, from above
        `after_vector_id`."""
        ...

    def set_image_hashes(self, rows: Sequence[tuple[str, int, HashValues]]) -> int:
        """Store (product_id, vector_id, hashes) of products whose current vector is still
        `vector_id` (others are skipped); returns how many were stored."""
        ...

    def set_duplicate_groups(self, groups: Mapping[str, str | None]) -> None:
        """product id -> its near-duplicate group id (None: in no group), one transaction."""
        ...

    def group_members(self, group_ids: Sequence[str]) -> dict[str, list[str]]:
        """group id -> its members' product ids (sorted)."""
        ...

    def close(self) -> None: ...


def now() -> float:
    return time.time()
