"""Candidates that match a filter, chosen by how selective the filter is.

A filtered query must return `limit` results whenever that many matching items exist, so
post-filtering one fixed top-k is not enough. Two strategies:

* **exact** — the filter matches few items (`filter_exact_max_items`): score just those
  items. An exact index (flat) does it with a FAISS `IDSelector`; for an approximate one
  (HNSW, IVF-PQ), whose selector search is itself approximate and misses items when the
  subset is tiny, the stored embeddings of the matching items are scored directly.
* **ann** — the filter matches many items: ask the index for
  `wanted / selectivity x filter_oversample` neighbours, keep those that match (the
  catalog's metadata and `ProductFilter.matches`), and widen k by `filter_widen_factor`
  until enough match or the index has nothing more to give; if the index runs dry while
  the catalog says more matching items exist, fall back to the exact strategy.
* **pushdown** — instead of **ann**, when the index evaluates filters itself (a vector
  database storing the filterable fields, `FilteringIndex`): it returns matching items
  only; the catalog still has the last word on each hit.

Where the index's process keeps the filterable fields in memory (`FilterBitmaps`, in-process
FAISS indexes), a filter's count and matching ids come from its bitmaps instead of SQL: a
flat index always scans the matching ids alone (its selector), IVF-PQ scans its widened
cells with them, HNSW scores a small set exactly (gathered by node) and post-filters a
broad one against the bitmap. A filter the bitmaps do not answer
(`FilterBitmaps.supports`) asks the catalog as before. Either way each hit's product, read
from the catalog, must still match: a change not yet replayed never leaks through.

Several query vectors ("best" multi-image queries) are searched together and merged by
their best score per item; each query must see `wanted` matches of its own before the
merged list is complete, so the merge equals brute force over the union.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from pyroaring import BitMap

from lookalike.catalog.base import Catalog, Product, ProductFilter
from lookalike.catalog.filter_bitmaps import FilterBitmaps, bitmap_ids
from lookalike.catalog.product_cache import CachedRows
from lookalike.config import Settings
from lookalike.index.base import FilteringIndex, VectorIndex

Strategy = Literal["exact", "ann", "pushdown"]

UNFILTERED_SPARE = 8
# Flat (exact) indexes take the ID-selector path for filters matching at most this share of
# the items, post-filtering above it. Measured on the demo (70k x 384, 1 FAISS thread, one
# "similar" query): a category filter (10%) 86 -> 12 ms p50, category and a price ceiling
# 366 -> 38 ms, but a 50% price filter 26 -> 40 ms (listing 35k matching ids from the
# catalog costs more than post-filtering a flat scan that finds matches at once).
EXACT_SELECTOR_MAX_SHARE = 0.25
# With the bitmaps, an index that scores a small subset exactly by gathering its vectors
# (HNSW) takes that path for at most this many items: gathering costs per item (50k of 1M
# x 128-d: 32 ms on 2 busy cores), a post-filtered graph walk does not grow with the subset
# (the same 5% filter: 18 ms even with the SQL reads of the catalog path). But a graph walk
# misses filters whose items lie away from the query (a category of a clustered catalog:
# recall 0.13-0.70 at 10-50% of the demo's 70k), so exact goes up to 50k items (19 ms for
# 35k x 384 there); beyond, a walk that comes back short is redone exactly (index/hnsw.py).
EXACT_SUBSET_MAX_ITEMS = 50_000


@dataclass(frozen=True)
class FilterPolicy:
    """When to search a filter's items exactly, and how hard to oversample otherwise."""

    exact_max_items: int = 2_000
    oversample: float = 3.0
    widen_factor: float = 4.0
    # Post-filtering reads either the candidates' product rows or every matching vector
    # id. An id costs a small fraction of a product row (no JSON, no object), so the id
    # set wins once the filter matches at most this many times as many items as k.
    id_set_ratio: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FilterPolicy:
        return cls(
            exact_max_items=settings.filter_exact_max_items,
            oversample=settings.filter_oversample,
            widen_factor=settings.filter_widen_factor,
        )


@dataclass(frozen=True)
class Plan:
    """The strategy for one filter, with what it is based on."""

    strategy: Strategy
    matching: int  # searchable items matching the filter (the index size when unfiltered)
    selectivity: float  # matching / indexed, at most 1


@dataclass
class Candidates:
    """Matching items, best first, with their products."""

    ids: np.ndarray  # int64 vector ids
    similarities: np.ndarray  # float32; the best over the queries
    products: dict[int, Product]
    complete: bool  # every matching item the search can reach is in here
    path: str = "exact"  # "exact", "ann", or "ann+exact" (ANN ran dry, then exact)
    largest_k: int = 0  # the largest k asked of the index (ANN path)


class CandidateFinder:
    """Finds the best `wanted` items matching a filter, by either strategy."""

    def __init__(
        self,
        catalog: Catalog,
        index: VectorIndex,
        policy: FilterPolicy,
        timings: dict[str, float] | None = None,
        filters: FilterBitmaps | None = None,
        rows: CachedRows | None = None,
    ) -> None:
        self.catalog = catalog
        # Candidates' product rows: through the search's product cache when it has one.
        self.rows: Catalog | CachedRows = rows if rows is not None else catalog
        self.index = index
        self.policy = policy
        self.timings = timings if timings is not None else {}
        self.filters = filters
        self._answered: tuple[ProductFilter, BitMap | None] | None = None

    # --- matching ids: the bitmaps, else the catalog -------------------------------------
    def _bitmap(self, product_filter: ProductFilter) -> BitMap | None:
        """The filter's matching ids from the bitmaps (None: they do not answer it); one
        finder serves one search, so the answer is kept for its later steps."""
        if self.filters is None:
            return None
        if self._answered is None or self._answered[0] is not product_filter:
            supported = self.filters.supports(product_filter)
            found = self.filters.matching(product_filter) if supported else None
            self._answered = (product_filter, found)
        return self._answered[1]

    def _count(self, product_filter: ProductFilter) -> int:
        found = self._bitmap(product_filter)
        return len(found) if found is not None else self.catalog.count_matching(product_filter)

    def _members(self, product_filter: ProductFilter) -> np.ndarray:
        """Sorted int64 vector ids matching the filter."""
        found = self._bitmap(product_filter)
        if found is not None:
            return bitmap_ids(found)
        return self.catalog.filter_vector_ids(product_filter)

    # --- strategy ------------------------------------------------------------------------
    def plan(self, product_filter: ProductFilter | None, wanted: int) -> Plan:
        """Exact when the filter matches at most `exact_max_items`, or fewer items than the
        ANN path would fetch as candidates (then scoring them all is the cheaper read; at
        N indexed items this is matching <= sqrt(wanted * N * oversample), so the
        threshold grows with the catalog); ANN otherwise."""
        indexed = len(self.index)
        if product_filter is None or product_filter.is_empty:
            return Plan("ann", indexed, 1.0)
        with self._timed("filter_ms"):
            matching = self._count(product_filter)
        selectivity = min(1.0, matching / indexed) if indexed else 0.0
        if matching <= self.policy.exact_max_items or selectivity == 0.0:
            return Plan("exact", matching, selectivity)
        subset = min(self.index.capabilities.exact_subset_share * indexed, EXACT_SUBSET_MAX_ITEMS)
        if matching <= subset and self._bitmap(product_filter) is not None:
            # The index scores so small a subset exactly, and the ids cost nothing to list:
            # exact and no dearer than a graph walk widened by 1/selectivity.
            return Plan("exact", matching, selectivity)
        if self._first_k(wanted, selectivity) >= min(matching, indexed):
            return Plan("exact", matching, selectivity)
        if self.index.capabilities.filter_pushdown and cast(
            FilteringIndex, self.index
        ).supports_filter(product_filter):
            return Plan("pushdown", matching, selectivity)
        return Plan("ann", matching, selectivity)

    def find(
        self,
        queries: np.ndarray,
        wanted: int,
        product_filter: ProductFilter | None,
        plan: Plan,
        exclude: frozenset[int] = frozenset(),
    ) -> Candidates:
        """The best `wanted` matching items (fewer only when fewer exist), best first."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if plan.strategy == "exact":
            return self.exact(queries, wanted, product_filter, exclude)
        if plan.strategy == "pushdown" and product_filter is not None:
            return self.pushdown(queries, wanted, product_filter, exclude)
        return self.ann(queries, wanted, product_filter, plan, exclude)

    # --- filter inside the index ---------------------------------------------------------
    def pushdown(
        self,
        queries: np.ndarray,
        wanted: int,
        product_filter: ProductFilter,
        exclude: frozenset[int] = frozenset(),
    ) -> Candidates:
        """The index filters; hits whose product no longer matches in the catalog (a change
        not yet written to the index) are dropped, and k widens if that left too few."""
        index = cast(FilteringIndex, self.index)  # plan() chose pushdown for this kind
        max_k = self.index.capabilities.max_k or len(self.index) or 1
        k = min(wanted + len(exclude) + UNFILTERED_SPARE, max_k)
        while True:
            with self._timed("ann_ms"):
                scores, found = index.search_filtered(queries, k, product_filter)
            ids, sims = merge_best(scores, found)
            with self._timed("metadata_ms"):
                products = self.rows.by_vector_ids(ids.tolist())
            good = {
                i: p for i, p in products.items() if i not in exclude and product_filter.matches(p)
            }
            ids, sims = _with_products(ids, sims, good)
            exhausted = (found >= 0).sum(axis=1).min() < k or k >= max_k
            if len(ids) >= wanted or exhausted:
                ids, sims = ids[:wanted], sims[:wanted]
                kept = {int(i): good[int(i)] for i in ids}
                return Candidates(ids, sims, kept, complete=exhausted, path="pushdown", largest_k=k)
            k = min(max_k, math.ceil(k * self.policy.widen_factor))

    # --- exact ---------------------------------------------------------------------------
    def exact(
        self,
        queries: np.ndarray,
        wanted: int,
        product_filter: ProductFilter | None,
        exclude: frozenset[int] = frozenset(),
    ) -> Candidates:
        """Score exactly the items matching the filter (every indexed item when unfiltered)."""
        with self._timed("filter_ms"):
            if product_filter is None or product_filter.is_empty:
                allowed = None
            else:
                allowed = self._members(product_filter)
                if exclude:
                    allowed = allowed[~np.isin(allowed, _id_array(exclude))]
        if allowed is not None and len(allowed) == 0:
            return _no_candidates()
        caps = self.index.capabilities
        exact_search = caps.exact_filtered or (
            allowed is not None and len(allowed) <= caps.exact_subset_share * len(self.index)
        )
        if allowed is not None and not exact_search:
            ids, sims = self._score_stored(queries, allowed, wanted)
            reachable = len(allowed)
        else:
            k = wanted + len(exclude)
            if allowed is not None:
                k = min(k, len(allowed))
            with self._timed("ann_ms"):
                scores, found = self.index.search(queries, k, allowed_ids=allowed)
            ids, sims = merge_best(scores, found)
            if exclude:
                keep = ~np.isin(ids, _id_array(exclude))
                ids, sims = ids[keep], sims[keep]
            reachable = len(allowed) if allowed is not None else len(self.index) - len(exclude)
        ids, sims = ids[:wanted], sims[:wanted]
        with self._timed("metadata_ms"):
            products = _still_matching(self.rows.by_vector_ids(ids.tolist()), product_filter)
        ids, sims = _with_products(ids, sims, products)
        return Candidates(ids, sims, products, complete=wanted >= reachable)

    def _score_stored(
        self, queries: np.ndarray, allowed: np.ndarray, wanted: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the stored embeddings of `allowed` (the index's model only)."""
        with self._timed("metadata_ms"):
            stored = self.catalog.embeddings_by_vector_ids(
                allowed.tolist(), model_id=self.index.meta.model_id
            )
        dim = queries.shape[1]
        ids = np.fromiter(
            (i for i, v in stored.items() if v.shape == (dim,)), dtype=np.int64, count=-1
        )
        if not len(ids):
            return ids, np.zeros(0, dtype=np.float32)
        with self._timed("ann_ms"):
            matrix = np.stack([stored[int(i)] for i in ids])
            best = (queries @ matrix.T).max(axis=0)
            top = _top_indices(best, wanted)
        return ids[top], best[top].astype(np.float32)

    # --- ANN + post-filter ---------------------------------------------------------------
    def ann(
        self,
        queries: np.ndarray,
        wanted: int,
        product_filter: ProductFilter | None,
        plan: Plan,
        exclude: frozenset[int] = frozenset(),
    ) -> Candidates:
        """Oversample the index, post-filter, and widen k until each query has `wanted`
        matches or the index has nothing more to give."""
        indexed = len(self.index)
        if indexed == 0 or wanted <= 0:
            return _no_candidates()
        unfiltered = product_filter is None or product_filter.is_empty
        caps = self.index.capabilities
        # An exact index (flat) could serve any filter by post-filtering; above
        # EXACT_SELECTOR_MAX_SHARE listing the matching ids from SQL costs more than it
        # saves. From the bitmaps they cost about a millisecond: a flat index then always
        # scans with the selector. HNSW keeps post-filtering (its graph walk widened by
        # 1/selectivity costs more than a top-k oversampled by it), now checked against
        # the bitmap instead of product rows.
        bitmap = None if unfiltered else self._bitmap(cast(ProductFilter, product_filter))
        selector = caps.selector_scan and not (
            caps.exact_filtered and plan.selectivity > EXACT_SELECTOR_MAX_SHARE and bitmap is None
        )
        if not unfiltered and selector:
            return self._selector_ann(queries, wanted, cast(ProductFilter, product_filter), exclude)
        excluded = _id_array(exclude)
        products: dict[int, Product] = {}  # fetched candidates that match
        rejected: set[int] = set(exclude)  # excluded, deleted since, or not matching
        # Every matching vector id, once that is cheaper than reading candidates' rows.
        members: np.ndarray | BitMap | None = bitmap
        if unfiltered:
            # A few spare candidates cover rows deleted since the index saw them.
            k = min(indexed, wanted + len(exclude) + UNFILTERED_SPARE)
        else:
            k = min(indexed, self._first_k(wanted + len(exclude), plan.selectivity))
        while True:
            with self._timed("ann_ms"):
                scores, found = self.index.search(queries, k)
            if not unfiltered and members is None and plan.matching <= k * self.policy.id_set_ratio:
                with self._timed("filter_ms"):
                    members = self._members(cast(ProductFilter, product_filter))
            if members is not None:
                good = _member(found, members) & ~np.isin(found, excluded)
            else:
                self._fetch_matching(found, product_filter, products, rejected)
                good = np.isin(found, _id_array(products))
            if good.sum(axis=1).min() >= wanted:
                ids, sims = merge_best(np.where(good, scores, -np.inf), np.where(good, found, -1))
                return self._take(ids, sims, wanted, products, product_filter, complete=False, k=k)
            # Fewer valid ids than asked means the index cannot give more at this k (its
            # end, or an ANN search budget below k): widening would return the same.
            if k >= indexed or (found >= 0).sum(axis=1).min() < k:
                break
            k = min(indexed, math.ceil(k * self.policy.widen_factor))
        ids, sims = merge_best(np.where(good, scores, -np.inf), np.where(good, found, -1))
        if not unfiltered and len(ids) < self.expected(plan, product_filter, exclude):
            # The catalog holds matching items the index did not reach: score them exactly.
            fallback = self.exact(queries, wanted, product_filter, exclude)
            fallback.path, fallback.largest_k = "ann+exact", k
            return fallback
        return self._take(ids, sims, wanted, products, product_filter, complete=True, k=k)

    def _selector_ann(
        self,
        queries: np.ndarray,
        wanted: int,
        product_filter: ProductFilter,
        exclude: frozenset[int],
    ) -> Candidates:
        """The index searches only the matching ids; exact scoring covers any shortfall."""
        with self._timed("filter_ms"):
            allowed = self._members(product_filter)
            if exclude:
                allowed = allowed[~np.isin(allowed, _id_array(exclude))]
        if len(allowed) == 0:
            return _no_candidates()
        k = min(wanted, len(allowed))
        with self._timed("ann_ms"):
            scores, found = self.index.search(queries, k, allowed_ids=allowed)
        if (found >= 0).sum(axis=1).min() < k:
            # The widened probes held too few matches (or rows were deleted since).
            fallback = self.exact(queries, wanted, product_filter, exclude)
            fallback.path, fallback.largest_k = "ann+exact", k
            return fallback
        ids, sims = merge_best(scores, found)
        return self._take(
            ids, sims, wanted, {}, product_filter, complete=wanted >= len(allowed), k=k
        )

    def _fetch_matching(
        self,
        found: np.ndarray,
        product_filter: ProductFilter | None,
        products: dict[int, Product],
        rejected: set[int],
    ) -> None:
        """Post-filter new candidates on their metadata (`ProductFilter.matches`)."""
        fresh = [
            i
            for i in (int(v) for v in np.unique(found[found >= 0]))
            if i not in products and i not in rejected
        ]
        if not fresh:
            return
        with self._timed("metadata_ms"):
            fetched = self.rows.by_vector_ids(fresh)
        for vid in fresh:
            product = fetched.get(vid)
            if product is not None and (product_filter is None or product_filter.matches(product)):
                products[vid] = product
            else:
                rejected.add(vid)

    def _take(
        self,
        ids: np.ndarray,
        sims: np.ndarray,
        wanted: int,
        products: dict[int, Product],
        product_filter: ProductFilter | None,
        *,
        complete: bool,
        k: int,
    ) -> Candidates:
        ids, sims = ids[:wanted], sims[:wanted]
        missing = [int(i) for i in ids if int(i) not in products]
        if missing:
            with self._timed("metadata_ms"):
                fetched = _still_matching(self.rows.by_vector_ids(missing), product_filter)
                products = {**products, **fetched}
        kept = {int(i): products[int(i)] for i in ids if int(i) in products}
        ids, sims = _with_products(ids, sims, kept)
        return Candidates(ids, sims, kept, complete=complete, path="ann", largest_k=k)

    def expected(
        self, plan: Plan, product_filter: ProductFilter | None, exclude: frozenset[int]
    ) -> int:
        """How many items the catalog says match, less the excluded ones."""
        if not exclude:
            return plan.matching
        with self._timed("metadata_ms"):
            excluded = self.rows.by_vector_ids(sorted(exclude))
        unfiltered = product_filter is None or product_filter.is_empty
        hidden = sum(1 for p in excluded.values() if unfiltered or product_filter.matches(p))
        return plan.matching - hidden

    def _first_k(self, wanted: int, selectivity: float) -> int:
        if selectivity <= 0:
            return len(self.index)
        return max(wanted, math.ceil(wanted / selectivity * self.policy.oversample))

    @contextmanager
    def _timed(self, key: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = (time.perf_counter() - started) * 1000
            self.timings[key] = self.timings.get(key, 0.0) + spent


def merge_best(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-query result lists -> unique ids with their best score, best first."""
    flat_ids = np.asarray(ids).ravel()
    flat_scores = np.asarray(scores, dtype=np.float32).ravel()
    valid = flat_ids >= 0
    flat_ids, flat_scores = flat_ids[valid], flat_scores[valid]
    order = np.argsort(-flat_scores, kind="stable")
    flat_ids, flat_scores = flat_ids[order], flat_scores[order]
    if np.asarray(ids).ndim > 1 and np.asarray(ids).shape[0] > 1:
        _, first = np.unique(flat_ids, return_index=True)
        first.sort()  # the first occurrence of an id in score order is its best score
        flat_ids, flat_scores = flat_ids[first], flat_scores[first]
    return flat_ids.astype(np.int64), flat_scores


def _top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, largest first."""
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")]


def _with_products(
    ids: np.ndarray, sims: np.ndarray, products: dict[int, Product]
) -> tuple[np.ndarray, np.ndarray]:
    """Drop ids whose product was deleted after the index or filter saw it."""
    keep = np.fromiter((int(i) in products for i in ids), dtype=bool, count=len(ids))
    return ids[keep], sims[keep]


def _member(found: np.ndarray, members: np.ndarray | BitMap) -> np.ndarray:
    """Which of `found` (any shape, -1 for none) are among `members`."""
    if isinstance(members, np.ndarray):
        return np.isin(found, members)
    flat = found.ravel()
    hits = np.fromiter((v >= 0 and v in members for v in flat.tolist()), bool, len(flat))
    return hits.reshape(found.shape)


def _still_matching(
    products: dict[int, Product], product_filter: ProductFilter | None
) -> dict[int, Product]:
    """The products that match the filter as the catalog has them now (the ids came from
    the bitmaps or an earlier read, which may predate a write)."""
    if product_filter is None or product_filter.is_empty:
        return products
    return {i: p for i, p in products.items() if product_filter.matches(p)}


def _id_array(ids: frozenset[int] | set[int] | dict[int, Product]) -> np.ndarray:
    return np.fromiter(ids, dtype=np.int64, count=len(ids))


def _no_candidates() -> Candidates:
    return Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32), {}, complete=True)
