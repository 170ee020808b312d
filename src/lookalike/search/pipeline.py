"""The query path: compose -> candidates -> filter -> rank -> diversify -> results.

Each stage is a small unit with one job:

* compose (`compose.QueryComposer`): encode the request's images and texts (through the
  embedding cache) and combine them with the product's embedding into query vector(s);
* candidates and filter (`candidates.CandidateFinder`): the best matching items from the
  index, by the cheapest strategy that keeps the results complete (exact over a small
  filtered set, ANN with oversampling, or the index's own filtering); the catalog has the
  last word on every candidate (deleted or changed since the index saw it);
* floor (`floor`): candidates under the minimum raw similarity are dropped (calibrated per
  model and query kind, or the request's `min_score`), counted in `below_floor`;
* rank (`ranking/`): a ranker scores the whole candidate pool and reports its features
  (the A/B arm of the session picks the ranker while an experiment runs);
* collapse (`collapse`, on request): one hit per near-duplicate group, the group's other
  members listed on it;
* diversify (`diversity`): caps per category/brand and MMR over the ranked pool;
* results: the page, with per-stage timings and what ranked it; on a small random share
  of searches its top slots are shuffled (`ranking/explore.py`), after the result cache.

The result cache wraps the stages after compose, in this one place. Options are checked
once, in `request.check_options`, whichever entry point is used.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from lookalike.catalog.base import Catalog, ProductFilter
from lookalike.catalog.product_cache import CachedRows, ProductCache
from lookalike.config import Settings
from lookalike.encode.base import l2_normalize
from lookalike.encode.batching import BatchingEncoder
from lookalike.errors import InvalidInput, ModelMismatch
from lookalike.index.live import LiveIndex
from lookalike.search.caches import SearchCaches
from lookalike.search.candidates import CandidateFinder, FilterPolicy
from lookalike.search.collapse import collapse_duplicates
from lookalike.search.compose import QueryComposer
from lookalike.search.diversity import Diversity, diversify
from lookalike.search.floor import NO_FLOOR, Floor, FloorDefaults, apply_floor
from lookalike.search.ranking.arms import assign_arm
from lookalike.search.ranking.base import Ranker, ordered
from lookalike.search.ranking.explore import shuffle_top
from lookalike.search.ranking.learned import LearnedModels, fallback_of
from lookalike.search.ranking.registry import create_ranker
from lookalike.search.request import (
    Options,
    QueryContext,
    SearchRequest,
    check_inputs,
    check_options,
)
from lookalike.search.result_cache import ResultCache
from lookalike.search.results import SearchHit, SearchResults

if TYPE_CHECKING:
    from lookalike.encode.base import Encoder
    from lookalike.encode.images import ImageLimits
    from lookalike.files.fetch import Fetcher


class SearchPipeline:
    """One search path for every query kind; the CLI, API and consumers reach it through
    the Engine. `composer` is needed only for `run` (requests with images or texts)."""

    def __init__(
        self,
        catalog: Catalog,
        index: LiveIndex,
        settings: Settings | None = None,
        *,
        composer: QueryComposer | None = None,
        result_cache: ResultCache | None = None,
        rng: random.Random | None = None,
        floors: FloorDefaults | None = None,
    ) -> None:
        self.catalog = catalog
        self.index = index
        # Defaults without reading the environment: entry points pass their settings.
        self.settings = settings if settings is not None else Settings.model_construct()
        self.composer = composer
        self.result_cache = result_cache or ResultCache(None, 0, "")
        self.models = LearnedModels(catalog, self.settings.ranker_reload_interval_s)
        self.rng = rng or random.Random()  # which searches show their top slots shuffled
        self.floors = floors or FloorDefaults(catalog, self.settings)
        items = self.settings.product_cache_items
        self.product_cache = ProductCache(items) if items > 0 else None

    # --- entry points --------------------------------------------------------------------
    def run(self, request: SearchRequest) -> SearchResults:
        """A whole request: compose the query, then rank, through the result cache."""
        if self.composer is None:
            raise RuntimeError("this pipeline has no query composer (vectors only)")
        check_inputs(request)
        settings = self.settings
        arm = assign_arm(settings, request.ranker, request.session, overridden=bool(request.rerank))
        options = check_options(
            settings,
            limit=request.limit,
            filters=request.filters,
            diversity=request.diversity,
            rerank=request.rerank,
            ranker=arm.ranker,
            multi_image=request.multi_image,
            min_score=request.min_score,
            collapse=request.collapse,
        )
        query = self.composer.compose(request)
        self._check_model()
        floor = self.floors.choose(
            options.min_score, self.index.index.meta.model_id, query.context.kind
        )
        results = self._cached(query.vectors, query.exclude, query.context, options, floor)
        results.timings_ms = {"encode_ms": query.encode_ms, **results.timings_ms}
        results.query_time_ms += query.encode_ms
        results.arm = arm.arm
        share = settings.rank_explore_share
        if share > 0 and self.rng.random() < share:
            results = shuffle_top(results, settings.rank_explore_top_k, self.rng)
        return results

    def by_vector(
        self,
        vector: np.ndarray,
        limit: int,
        product_filter: ProductFilter | None = None,
        *,
        exclude_vector_ids: Sequence[int] = (),
        rerank: Ranker | Mapping[str, float] | None = None,
        diversity: Diversity | None = None,
        now: float | None = None,
        context: QueryContext | None = None,
        min_score: float | None = None,
        collapse: str | None = None,
    ) -> SearchResults:
        """The best `limit` products for a query vector (dim,), or several query vectors
        (n, dim) merged by each product's best similarity ("best" multi-image queries).

        `rerank`: hand-weight overrides on top of the settings, or a ready Ranker.
        `min_score`: a relevance floor (none unless given: a vector has no query kind).
        Results number `limit` whenever that many matching items exist (diversity caps
        permitting, within `rank_pool_max` candidates). Not cached.
        """
        ranker = rerank if _is_ranker(rerank) else None
        options = check_options(
            self.settings,
            limit=limit,
            filters=product_filter,
            diversity=diversity,
            rerank=None if ranker is not None else rerank,  # type: ignore[arg-type]
            min_score=min_score,
            collapse=collapse,
        )
        queries = self._checked_vectors(vector)
        context = context or QueryContext("image", options.filters)
        excluded = frozenset(int(v) for v in exclude_vector_ids)
        floor = (
            Floor(options.min_score, "request")
            if options.min_score is not None and options.min_score > NO_FLOOR
            else Floor(None, "none")
        )
        return self._search(queries, excluded, context, options, floor, ranker=ranker, now=now)

    # --- stages --------------------------------------------------------------------------
    def _cached(
        self,
        queries: np.ndarray,
        exclude: frozenset[int],
        context: QueryContext,
        options: Options,
        floor: Floor,
    ) -> SearchResults:
        """Filtered, ranked, diversified results, from the result cache while the catalog
        and this process's index are as they were."""
        cache = self.result_cache
        ranker = create_ranker(self.settings, options.ranker, options.rerank, self.models)
        if not cache.enabled:
            return self._search(queries, exclude, context, options, floor, ranker=ranker)
        started = time.perf_counter()
        # Read before searching: a write after this changes the next key.
        version = self.catalog.version()
        key = cache.key(
            queries,
            {
                "limit": options.limit,
                "filters": options.filters,
                "exclude": sorted(exclude),
                "ranker": f"{ranker.name}@{ranker.version}",
                "fallback": fallback_of(ranker),
                "kind": context.kind,
                "diversity": options.diversity,
                "min_score": floor.min_score,
                "collapse": options.collapse,
                "model": self.index.index.meta.model_id,
                # A shared index moves without this process's watermark: its size tells
                # (a count that lagged a write elsewhere is not kept past the next count).
                "catalog_version": version,
                "index_watermark": self.index.watermark,
                "index_size": len(self.index.index),
            },
        )
        cached = cache.get(key)
        if cached is not None:
            elapsed = (time.perf_counter() - started) * 1000
            cached.query_time_ms, cached.timings_ms = elapsed, {"result_cache_ms": elapsed}
            return cached
        results = self._search(
            queries, exclude, context, options, floor, ranker=ranker, catalog_version=version
        )
        cache.put(key, results)
        return results

    def _search(
        self,
        queries: np.ndarray,
        excluded: frozenset[int],
        context: QueryContext,
        options: Options,
        floor: Floor,
        *,
        ranker: Ranker | None = None,
        now: float | None = None,
        catalog_version: int | None = None,
    ) -> SearchResults:
        started = time.perf_counter()
        now = time.time() if now is None else now
        ranker = ranker or create_ranker(self.settings, options.ranker, options.rerank, self.models)
        limit, product_filter, diversity = options.limit, options.filters, options.diversity
        diversifying = diversity is not None and diversity.active
        collapsing = options.collapse == "duplicates"
        timings: dict[str, float] = {}
        finder = CandidateFinder(
            self.catalog,
            self.index.index,
            FilterPolicy.from_settings(self.settings),
            timings,
            filters=self.index.filters,
            rows=self._rows(catalog_version),
        )
        settings = self.settings
        pool_max = max(settings.rank_pool_max, limit)
        pool = limit
        if ranker.reorders or diversifying or collapsing:
            # Re-ranking, collapsing and diversity choose from more candidates than they return.
            pool = min(limit * settings.rank_pool_factor, pool_max)
        plan = finder.plan(product_filter, pool + len(excluded))
        while True:
            candidates = finder.find(queries, pool, product_filter, plan, excluded)
            # The floor: candidates come best first, so it keeps a prefix of them.
            kept, below_floor = apply_floor(candidates.similarities, floor.min_score, limit)
            # Under the floor means nothing further down the index can be above it.
            exhausted = candidates.complete or kept < len(candidates.ids) or pool >= pool_max
            pool_hits = [
                SearchHit(candidates.products[int(i)], float(s), float(s))
                for i, s in zip(candidates.ids[:kept], candidates.similarities[:kept], strict=True)
            ]
            t = time.perf_counter()
            ranking = ranker.rank(context, pool_hits, now)
            hits, features = ordered(pool_hits, ranking)
            _add_time(timings, "rank_ms", t)
            if collapsing:
                t = time.perf_counter()
                hits, features = collapse_duplicates(self.catalog, hits, features)
                _add_time(timings, "collapse_ms", t)
            if not diversifying:
                chosen, rows = hits[:limit], features[:limit]
                if len(chosen) >= limit or not collapsing or exhausted:
                    break
                pool = min(pool_max, int(pool * settings.filter_widen_factor))
                continue
            t = time.perf_counter()
            embeddings = self._embeddings(hits) if diversity.mmr_lambda is not None else None
            chosen = diversify(hits, limit, diversity, embeddings)
            position = {id(hit): row for row, hit in enumerate(hits)}
            rows = features[[position[id(hit)] for hit in chosen]]
            _add_time(timings, "diversity_ms", t)
            if len(chosen) >= limit or exhausted:
                break
            # The caps left too few: look further down the ranking.
            pool = min(pool_max, int(pool * settings.filter_widen_factor))

        total = finder.expected(plan, product_filter, excluded)
        elapsed = (time.perf_counter() - started) * 1000
        return SearchResults(
            chosen,
            max(total, 0),
            elapsed,
            timings,
            strategy=candidates.path,
            ranker=f"{ranker.name}@{ranker.version}",
            feature_names=ranking.feature_names,
            features=rows,
            fallback=ranking.fallback or fallback_of(ranker),
            min_score=floor.min_score,
            below_floor=below_floor,
        )

    # --- checks and helpers --------------------------------------------------------------
    def _rows(self, catalog_version: int | None) -> CachedRows | None:
        """Candidates' rows for one search: through the product cache, as of the catalog
        version the search read (read now when it has not)."""
        if self.product_cache is None:
            return None
        version = self.catalog.version() if catalog_version is None else catalog_version
        return self.product_cache.at(self.catalog, version)

    def _checked_vectors(self, vector: np.ndarray) -> np.ndarray:
        queries = np.atleast_2d(np.asarray(vector, dtype=np.float32))
        dim = self.index.index.meta.dim
        if queries.ndim != 2 or queries.shape[1] != dim or not np.isfinite(queries).all():
            raise InvalidInput(f"a query vector must be {dim} finite numbers")
        return l2_normalize(queries)

    def _check_model(self) -> None:
        """Refuse to search a catalog that holds no embeddings of the index's model."""
        if len(self.index.index):
            return  # the index holds only the current model's vectors
        model_id = self.index.index.meta.model_id
        stats = self.catalog.stats()
        if stats.searchable and model_id not in stats.models:
            raise ModelMismatch(
                f"the catalog's {stats.searchable} embeddings were made with "
                f"{', '.join(stats.models)}, not the configured model {model_id}; "
                "run `lookalike reindex` to re-encode, or configure the model it was built with"
            )

    def _embeddings(self, hits: list[SearchHit]) -> np.ndarray:
        """Stored embeddings of the hits, a zero row where one is missing."""
        meta = self.index.index.meta
        vector_ids = [h.product.vector_id for h in hits if h.product.vector_id is not None]
        stored = self.catalog.embeddings_by_vector_ids(vector_ids, model_id=meta.model_id)
        out = np.zeros((len(hits), meta.dim), dtype=np.float32)
        for row, hit in enumerate(hits):
            vector = stored.get(hit.product.vector_id or -1)
            if vector is not None and vector.shape == out.shape[1:]:
                out[row] = vector
        return out


def build_pipeline(
    settings: Settings,
    catalog: Catalog,
    index: LiveIndex,
    encoder: Encoder,
    caches: SearchCaches,
    fetcher: Fetcher,
    limits: ImageLimits,
    floors: FloorDefaults | None = None,
) -> SearchPipeline:
    """The whole query path over these parts, with its composer, result cache and the
    default relevance floors; concurrent queries' encodings are batched (`query_batch_max`,
    `query_batch_wait_ms`)."""
    if settings.query_batch_max > 1:
        encoder = BatchingEncoder(  # type: ignore[assignment]
            encoder, settings.query_batch_max, settings.query_batch_wait_ms / 1000
        )
    composer = QueryComposer(
        encoder,
        caches.embeddings,
        catalog,
        fetcher,
        limits,
        image_weight=settings.image_weight,
        negative_weight=settings.negative_weight,
    )
    return SearchPipeline(
        catalog,
        index,
        settings,
        composer=composer,
        result_cache=caches.results,
        floors=floors,
    )


def _is_ranker(value: object) -> bool:
    return value is not None and not isinstance(value, Mapping) and hasattr(value, "rank")


def _add_time(timings: dict[str, float], key: str, since: float) -> None:
    timings[key] = timings.get(key, 0.0) + (time.perf_counter() - since) * 1000
