"""Query vector -> candidates -> filter -> metadata -> results."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from lookalike.catalog.base import Catalog, ProductFilter
from lookalike.index.base import FilteringIndex
from lookalike.index.live import LiveIndex
from lookalike.search.results import SearchHit, SearchResults


class SearchService:
    def __init__(self, catalog: Catalog, index: LiveIndex) -> None:
        self.catalog = catalog
        self.index = index

    def by_vector(
        self,
        vector: np.ndarray,
        limit: int,
        product_filter: ProductFilter | None = None,
        *,
        exclude_vector_ids: Sequence[int] = (),
    ) -> SearchResults:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        allowed = None
        index = self.index.index
        # A vector database that stores the filterable fields evaluates the filter itself.
        pushed = (
            product_filter is not None
            and not product_filter.is_empty
            and isinstance(index, FilteringIndex)
            and index.supports_filter(product_filter)
        )
        if pushed:
            total = self.catalog.count_matching(product_filter)
        elif product_filter is not None and not product_filter.is_empty:
            allowed = self.catalog.filter_vector_ids(product_filter)
            total = len(allowed)
        else:
            total = len(index)
        timings["filter_ms"] = (time.perf_counter() - started) * 1000

        t = time.perf_counter()
        # A few spare candidates cover excluded ids and rows deleted since the index saw them.
        k = limit + len(exclude_vector_ids) + 8
        if pushed:
            scores, ids = index.search_filtered(vector.reshape(1, -1), k, product_filter)
        else:
            scores, ids = index.search(vector.reshape(1, -1), k, allowed_ids=allowed)
        timings["ann_ms"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        excluded = set(int(v) for v in exclude_vector_ids)
        candidates = [
            (int(i), float(s))
            for i, s in zip(ids[0], scores[0], strict=True)
            if i >= 0 and int(i) not in excluded
        ]
        products = self.catalog.by_vector_ids([i for i, _ in candidates])
        hits = [SearchHit(products[i], score, score) for i, score in candidates if i in products][
            :limit
        ]
        timings["metadata_ms"] = (time.perf_counter() - t) * 1000
        if excluded and pushed:
            total -= sum(
                map(product_filter.matches, self.catalog.by_vector_ids(list(excluded)).values())
            )
        elif excluded:
            excluded_ids = np.fromiter(excluded, dtype=np.int64)
            total -= (
                int(np.isin(excluded_ids, allowed).sum()) if allowed is not None else len(excluded)
            )
        elapsed = (time.perf_counter() - started) * 1000
        return SearchResults(hits, max(total, 0), elapsed, timings)
