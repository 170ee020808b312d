"""Query vector(s) -> filtered candidates -> re-rank -> diversify -> results."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from lookalike.catalog.base import Catalog, ProductFilter
from lookalike.config import Settings
from lookalike.encode.base import l2_normalize
from lookalike.errors import InvalidInput
from lookalike.index.live import LiveIndex
from lookalike.search.diversity import Diversity, diversify
from lookalike.search.filtering import CandidateFinder, FilterPolicy
from lookalike.search.rerank import Reranker
from lookalike.search.results import SearchHit, SearchResults


class SearchService:
    def __init__(
        self, catalog: Catalog, index: LiveIndex, settings: Settings | None = None
    ) -> None:
        self.catalog = catalog
        self.index = index
        # Defaults without reading the environment: entry points pass their settings.
        self.settings = settings if settings is not None else Settings.model_construct()

    def by_vector(
        self,
        vector: np.ndarray,
        limit: int,
        product_filter: ProductFilter | None = None,
        *,
        exclude_vector_ids: Sequence[int] = (),
        rerank: Reranker | Mapping[str, float] | None = None,
        diversity: Diversity | None = None,
        now: float | None = None,
    ) -> SearchResults:
        """The best `limit` products for a query vector (dim,), or several query vectors
        (n, dim) merged by each product's best similarity ("best" multi-image queries).

        `rerank`: per-signal weight overrides on top of the settings (or a ready Reranker;
        `Reranker(RerankWeights())` ranks by similarity alone). `diversity`: caps and MMR.
        Results number `limit` whenever that many matching items exist (diversity caps
        permitting, within `rank_pool_max` candidates).
        """
        started = time.perf_counter()
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, got {limit}")
        queries = np.atleast_2d(np.asarray(vector, dtype=np.float32))
        dim = self.index.index.meta.dim
        if queries.ndim != 2 or queries.shape[1] != dim or not np.isfinite(queries).all():
            raise InvalidInput(f"a query vector must be {dim} finite numbers")
        queries = l2_normalize(queries)
        reranker = (
            rerank
            if isinstance(rerank, Reranker)
            else Reranker.from_settings(self.settings, rerank)
        )
        diversifying = diversity is not None and diversity.active
        if diversity is not None:
            diversity.validate()
        excluded = frozenset(int(v) for v in exclude_vector_ids)
        timings: dict[str, float] = {}
        finder = CandidateFinder(
            self.catalog, self.index.index, FilterPolicy.from_settings(self.settings), timings
        )

        settings = self.settings
        pool_max = max(settings.rank_pool_max, limit)
        pool = limit
        if reranker.active or diversifying:
            # Re-ranking and diversity choose from more candidates than they return.
            pool = min(limit * settings.rank_pool_factor, pool_max)
        plan = finder.plan(product_filter, pool + len(excluded))
        while True:
            candidates = finder.find(queries, pool, product_filter, plan, excluded)
            hits = [
                SearchHit(candidates.products[int(i)], float(s), float(s))
                for i, s in zip(candidates.ids, candidates.similarities, strict=True)
            ]
            t = time.perf_counter()
            hits = reranker.apply(hits, now)
            _add_time(timings, "rerank_ms", t)
            if not diversifying:
                chosen = hits[:limit]
                break
            t = time.perf_counter()
            embeddings = self._embeddings(hits) if diversity.mmr_lambda is not None else None
            chosen = diversify(hits, limit, diversity, embeddings)
            _add_time(timings, "diversity_ms", t)
            if len(chosen) >= limit or candidates.complete or pool >= pool_max:
                break
            # The caps left too few: look further down the ranking.
            pool = min(pool_max, int(pool * settings.filter_widen_factor))

        total = finder.expected(plan, product_filter, excluded)
        elapsed = (time.perf_counter() - started) * 1000
        return SearchResults(chosen, max(total, 0), elapsed, timings, strategy=candidates.path)

    def _embeddings(self, hits: list[SearchHit]) -> np.ndarray:
        """Stored embeddings of the hits, a zero row where one is missing."""
        vector_ids = [h.product.vector_id for h in hits if h.product.vector_id is not None]
        stored = self.catalog.embeddings_by_vector_ids(
            vector_ids, model_id=self.index.index.meta.model_id
        )
        out = np.zeros((len(hits), self.index.index.meta.dim), dtype=np.float32)
        for row, hit in enumerate(hits):
            vector = stored.get(hit.product.vector_id or -1)
            if vector is not None and vector.shape == out.shape[1:]:
                out[row] = vector
        return out


def _add_time(timings: dict[str, float], key: str, since: float) -> None:
    timings[key] = timings.get(key, 0.0) + (time.perf_counter() - since) * 1000
