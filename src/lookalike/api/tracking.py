"""Every API search is timed and counted by query type, gets a search id (returned to the
client, which sends it back with clicks), and is logged for the quality report and for
training a ranker: the shopper's session (hashed), the ranker and model that served it,
its A/B arm and randomised slots, and each shown hit's serving-time features. A click is
recorded only for a product the logged search returned, at the position it had there."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from lookalike.api.blocking import BlockingRunner
from lookalike.api.schemas import SearchResponse, search_response
from lookalike.api.uploads import ImageUpload, decode_uploads
from lookalike.catalog.logs import new_search_id, search_id_time
from lookalike.encode.batching import take_batch_wait_ms
from lookalike.engine import Engine, SearchRequest
from lookalike.errors import CatalogError, InvalidInput, LookalikeError, NotFound
from lookalike.quality import ClickRecord, SearchLogger, SearchRecord, SessionHasher
from lookalike.search import SearchResults

CLOCK_SKEW_S = 5.0  # replicas' clocks may differ this much (search ids carry their time)


class SearchTracker:
    def __init__(
        self,
        engine: Engine,
        run: BlockingRunner,
        log: SearchLogger | None,
        sessions: SessionHasher | None = None,
    ) -> None:
        self.engine = engine
        self.run = run
        self.log = log
        self.sessions = sessions or SessionHasher.for_catalog(engine.settings, engine.catalog)

    async def search(
        self, request: SearchRequest, uploads: list[ImageUpload], root_path: str = ""
    ) -> SearchResponse:
        """Run the search on the thread pool; time, count and log it. `request.session` is
        the client's raw session id: only its hash goes further."""
        metrics = self.engine.metrics
        request = dataclasses.replace(request, session=self.sessions.hash(request.session))
        kind = dataclasses.replace(request, images=[*request.images, *uploads]).kind
        started = time.perf_counter()
        try:
            results, stages = await self.run(_search, self.engine, request, uploads, started)
        except LookalikeError as exc:
            metrics.search_requests.labels(kind, str(exc.http_status)).inc()
            raise
        except Exception:
            metrics.search_requests.labels(kind, "500").inc()
            raise
        if results.fallback:  # "learned: why": labelled by the ranker that could not serve
            metrics.ranker_fallbacks.labels(results.fallback.partition(":")[0]).inc()
        now = time.time()
        search_id = new_search_id(now)
        serialising = time.perf_counter()
        response = search_response(results, root_path, search_id=search_id)
        elapsed = time.perf_counter() - started
        stages["serialise"] = (elapsed - (serialising - started)) * 1000
        metrics.search_seconds.labels(kind).observe(elapsed)
        metrics.search_requests.labels(kind, "200").inc()
        metrics.observe_stages(kind, {**stages, **results.timings_ms})
        if self.log is not None:
            self.log.record(self._record(search_id, now, kind, request, results, elapsed))
        return response

    def _record(
        self,
        search_id: str,
        now: float,
        kind: str,
        request: SearchRequest,
        results: SearchResults,
        elapsed: float,
    ) -> SearchRecord:
        features = results.features
        logged = features is not None and len(features) == len(results.hits)
        return SearchRecord(
            search_id=search_id,
            ts=now,
            query_type=kind,
            product_ids=tuple(hit.product.id for hit in results.hits),
            categories=tuple(hit.product.category for hit in results.hits),
            total_found=results.total_found,
            latency_ms=elapsed * 1000,
            session=request.session,
            ranker=results.ranker,
            model_id=self.engine.live_index.index.meta.model_id,
            arm=results.arm,
            explored=results.explored,
            feature_names=results.feature_names if logged else (),
            similarities=tuple(hit.similarity for hit in results.hits),
            features=tuple(map(tuple, features.tolist())) if logged else (),
        )

    async def click(self, search_id: str, product_id: str, kind: str = "click") -> ClickRecord:
        """Record a click (or `cart`, `purchase`) on a result of a logged search, at the
        position the log has (NotFound for a search nobody logged, InvalidInput for a
        product it did not return)."""
        if self.log is None:
            raise CatalogError("search logging is off (LOOKALIKE_SEARCH_LOG=false)")
        results = await self._logged_results(self.log, search_id)
        if results is None:
            raise NotFound(f"search {search_id} (never logged, or older than the logs keep)")
        if product_id not in results:
            raise InvalidInput(f"product {product_id!r} is not a result of search {search_id}")
        record = ClickRecord(
            search_id, product_id, results.index(product_id) + 1, time.time(), kind
        )
        self.log.record(record)
        return record

    async def _logged_results(self, log: SearchLogger, search_id: str) -> tuple[str, ...] | None:
        # A search this process logged is found at once (queued or written). One logged by
        # another replica sharing the catalog arrives with that replica's next batch, within
        # about a flush interval: for an id that says it is that recent, look again once the
        # window has passed before refusing. Older (or foreign) ids are answered at once;
        # the wait is async, so a forged recent id holds no thread.
        results = await self.run(log.results_of, search_id)
        made = search_id_time(search_id)
        if results is not None or made is None:
            return results
        window = 2 * log.flush_interval_s + 1.0
        age = time.time() - made
        if -CLOCK_SKEW_S <= age < window:
            await asyncio.sleep(window - age)
            results = await self.run(log.results_of, search_id)
        return results


def _search(
    engine: Engine, request: SearchRequest, uploads: list[ImageUpload], submitted: float
) -> tuple[SearchResults, dict[str, float]]:
    """Decode the query images (errors name the file), then search. Blocking. Returns the
    results and the API's own stages in ms: the wait for this thread, the decoding."""
    picked = time.perf_counter()
    stages = {"queue": (picked - submitted) * 1000}
    take_batch_wait_ms()  # this thread's earlier request may have left some (it failed)
    if uploads:
        images = decode_uploads(uploads, engine.limits, engine.encoder.info.image_size)
        request = dataclasses.replace(request, images=images)
        stages["decode"] = (time.perf_counter() - picked) * 1000
    results = engine.search(request)
    waited = take_batch_wait_ms()
    if waited:
        stages["batch_wait"] = waited
    return results, stages
