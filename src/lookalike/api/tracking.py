"""Every API search is timed and counted by query type, gets a search id (returned to the
client, which sends it back with clicks), and is logged for the quality report and for
training a ranker: the shopper's session (hashed), the ranker and model that served it,
its A/B arm and randomised slots, and each shown hit's serving-time features."""

from __future__ import annotations

import dataclasses
import time
import uuid

from lookalike.api.blocking import BlockingRunner
from lookalike.api.schemas import SearchResponse, search_response
from lookalike.api.uploads import ImageUpload, decode_uploads
from lookalike.engine import Engine, SearchRequest
from lookalike.errors import LookalikeError
from lookalike.quality import SearchLogger, SearchRecord, SessionHasher
from lookalike.search import SearchResults


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
            results = await self.run(_search, self.engine, request, uploads)
        except LookalikeError as exc:
            metrics.search_requests.labels(kind, str(exc.http_status)).inc()
            raise
        except Exception:
            metrics.search_requests.labels(kind, "500").inc()
            raise
        elapsed = time.perf_counter() - started
        metrics.search_seconds.labels(kind).observe(elapsed)
        metrics.search_requests.labels(kind, "200").inc()
        if results.fallback:  # "learned: why": labelled by the ranker that could not serve
            metrics.ranker_fallbacks.labels(results.fallback.partition(":")[0]).inc()
        search_id = uuid.uuid4().hex
        if self.log is not None:
            self.log.record(self._record(search_id, kind, request, results, elapsed))
        return search_response(results, root_path, search_id=search_id)

    def _record(
        self,
        search_id: str,
        kind: str,
        request: SearchRequest,
        results: SearchResults,
        elapsed: float,
    ) -> SearchRecord:
        features = results.features
        logged = features is not None and len(features) == len(results.hits)
        return SearchRecord(
            search_id=search_id,
            ts=time.time(),
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


def _search(engine: Engine, request: SearchRequest, uploads: list[ImageUpload]) -> SearchResults:
    """Decode the query images (errors name the file), then search. Blocking."""
    if uploads:
        request = dataclasses.replace(request, images=decode_uploads(uploads, engine.limits))
    return engine.search(request)
