"""Engine: the one service the CLI, the API and the consumers call. Wiring only: each job
lives in the package that owns it (the search pipeline, ingest runs and product writes,
index administration, backends chosen by their registries).

ingest -> encode -> catalog + index        query -> encode -> index -> catalog -> search
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lookalike.catalog import Catalog, Product, ProductFilter, open_catalog
from lookalike.catalog.base import WriteOutcome
from lookalike.config import Settings
from lookalike.duplicates import DuplicateFinder, DuplicateRules, GroupReport
from lookalike.duplicates.backfill import BackfillReport, regroup
from lookalike.duplicates.detector import group_of
from lookalike.encode import Encoder, ImageLimits, create_encoder
from lookalike.encode.decode_gate import return_freed_memory_promptly
from lookalike.encode.runtime import encoder_runtimes
from lookalike.engine_info import describe_engine
from lookalike.files.fetch import Fetcher, ingest_roots
from lookalike.housekeeping import Housekeeping, housekeep
from lookalike.index import LiveIndex, describe_index, open_index
from lookalike.index.admin import IndexAdmin
from lookalike.index.planner import IndexPlan
from lookalike.ingest.media import MediaStore
from lookalike.ingest.pipeline import IngestReport
from lookalike.ingest.runs import ingest_items, ingest_on_ray, stored_fetcher, stored_items
from lookalike.ingest.sources import BadRow, ItemSpec, count_items, open_source
from lookalike.ingest.writes import ProductWriter
from lookalike.metrics import Metrics
from lookalike.search import Diversity, SearchPipeline, SearchRequest
from lookalike.search.caches import SearchCaches
from lookalike.search.calibration import Calibration, floor_defaults, recalibrate
from lookalike.search.pipeline import build_pipeline
from lookalike.search.results import SearchResults

__all__ = ["Diversity", "Engine", "Housekeeping", "SearchRequest"]


class Engine:
    def __init__(
        self, settings: Settings, *, encoder: Encoder | None = None, progress: bool = False
    ) -> None:
        self.settings = settings
        self.progress = progress
        settings.ensure_data_dir()
        self.catalog: Catalog = open_catalog(settings)
        self._encoder = encoder
        self._live: LiveIndex | None = None
        self._pipeline: SearchPipeline | None = None
        self._duplicates: DuplicateFinder | None = None
        self.floors = floor_defaults(self.catalog, settings)
        self._lock = threading.Lock()
        self.limits = ImageLimits.from_settings(settings)
        return_freed_memory_promptly()  # decoded images' memory back to the OS when freed
        # Remote only; local files are read by siblings granted roots (index_path, reindex).
        self.fetcher = Fetcher.from_settings(settings)
        self.metrics = Metrics(settings.metrics_dir)
        namespace = self.catalog.get_meta("catalog_id") or self.catalog.url
        self.caches = SearchCaches.open(settings, namespace)
        self.metrics.watch_caches(self.caches.active)
        self.metrics.watch_index(lambda: len(self._live.index) if self._live else 0)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._live is not None:
            self._live.save(force=True)
        self.fetcher.close()
        self.caches.close()
        self.catalog.close()
        self.metrics.close()

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = create_encoder(self.settings)
        return self._encoder

    @property
    def live_index(self) -> LiveIndex:
        """The index, opened (or rebuilt from stored embeddings) on first use."""
        if self._live is None:
            dim, model_id, p = self.encoder.info.dim, self.encoder.info.model_id, self.progress
            with self._lock:
                if self._live is None:
                    live = open_index(self.settings, self.catalog, dim, model_id, progress=p)
                    self._live = self.metrics.time_searchable(live)
        return self._live

    @property
    def pipeline(self) -> SearchPipeline:
        if self._pipeline is None or self._pipeline.index is not self.live_index:
            args = (self.settings, self.catalog, self.live_index, self.encoder)
            self._pipeline = build_pipeline(
                *args, self.caches, self.fetcher, self.limits, self.floors
            )
        return self._pipeline

    @property
    def duplicates(self) -> DuplicateFinder:
        """Near-duplicate groups over the catalog and the live index."""
        index = self.live_index.index
        if self._duplicates is None or self._duplicates.index is not index:
            rules = DuplicateRules.from_settings(self.settings)
            self._duplicates = DuplicateFinder(self.catalog, index, rules, progress=self.progress)
        return self._duplicates

    def sync(self) -> int:
        """Pick up catalog changes made by other processes; returns log entries applied."""
        applied = self.live_index.catch_up()
        self.live_index.save()
        self.metrics.publish()  # other workers' scrapes read this process's live values
        return applied

    def stored_fetcher(self) -> Fetcher:
        """Reads back stored image sources (remote, or under media and known roots)."""
        return stored_fetcher(self.fetcher, self.settings, self.catalog)

    # --- ingest --------------------------------------------------------------------------
    def index_path(self, location: str | Path) -> IngestReport:
        """Index a folder (recursive) or a CSV/JSONL manifest; its local image files are
        read only under it (the manifest's folder) and media_roots."""
        fetcher = self.fetcher.with_local_roots(ingest_roots(location, self.settings))
        items = open_source(location)
        return self.index_items(items, total=count_items(location), fetcher=fetcher)

    def index_items(
        self,
        items: Iterable[ItemSpec | BadRow],
        total: int | None = None,
        *,
        fetcher: Fetcher | None = None,
        **options: Any,
    ) -> IngestReport:
        """Ingest items (`write_report`, `save_at_end`: see `ingest.runs.ingest_items`).
        `fetcher`: remote only unless the caller grants local roots."""
        parts = (self.catalog, self.live_index, self.encoder, fetcher or self.fetcher)
        options.setdefault("duplicates", self.duplicates)
        return ingest_items(
            self.settings, *parts, self.metrics, items, total, progress=self.progress, **options
        )

    def index_path_ray(self, location: str | Path, **options: Any) -> IngestReport:
        """`index_path` on Ray workers (`lookalike index --engine ray`)."""
        index = lambda: self.live_index  # noqa: E731 - opened once Ray is known to be there
        parts = (self.settings, self.catalog, index, self.encoder)
        return ingest_on_ray(*parts, location, progress=self.progress, **options)

    def reindex(self) -> IngestReport:
        """Re-encode every product from its image source with the current model."""
        total = self.catalog.stats().products
        return self.index_items(stored_items(self.catalog), total, fetcher=self.stored_fetcher())

    @property
    def writer(self) -> ProductWriter:
        """Single-product writes, searchable when they return."""
        # Only the API's metadata-only PUT ingests here: the item's image is its stored source.
        ingest = lambda items: self.index_items(  # noqa: E731
            items, write_report=False, fetcher=self.stored_fetcher()
        )
        parts = (self.live_index, self.encoder, self.limits, self.metrics)
        return ProductWriter(self.catalog, *parts, self.media, ingest, self.duplicates)

    @property
    def media(self) -> MediaStore:  # uploads by content hash; gone with their last product
        return MediaStore(self.settings.data_dir / "media", self.catalog)

    def housekeeping(self, now: float | None = None) -> Housekeeping:
        """Delete search logs past their retention and uploaded images no product uses."""
        return housekeep(self.catalog, self.media, self.settings, now=now)

    def upsert(self, item: ItemSpec, image: bytes | None = None) -> Product:
        return self.writer.upsert(item, image)

    def delete(self, product_id: str) -> None:
        self.writer.delete(product_id)

    def delete_many(self, product_ids: Sequence[str]) -> int:
        return self.writer.delete_many(product_ids)

    def delete_versions(self, versions: Mapping[str, int | None]) -> WriteOutcome:
        return self.writer.delete_versions(versions)

    # --- search --------------------------------------------------------------------------
    def search(self, request: SearchRequest) -> SearchResults:
        return self.pipeline.run(request)

    def search_image(self, image: Any, limit: int | None = None, filters=None) -> SearchResults:
        return self.search(SearchRequest(images=[image], limit=limit, filters=_f(filters)))

    def search_text(self, text: str, limit: int | None = None, filters=None) -> SearchResults:
        return self.search(SearchRequest(texts=[text], limit=limit, filters=_f(filters)))

    def search_similar(self, product_id: str, limit: int | None = None, filters=None):
        return self.search(SearchRequest(product_id=product_id, limit=limit, filters=_f(filters)))

    # --- result quality: relevance floor, near-duplicates ---------------------------------
    def calibrate(self) -> Calibration:
        """Measure the current model's relevance floor over this catalog and store it."""
        return recalibrate(
            self.settings, self.catalog, self.live_index.index, self.encoder, self.floors
        )

    def near_duplicates(self, *, write: bool = True) -> tuple[GroupReport, BackfillReport]:
        """Hash the images not hashed yet, then every near-duplicate group from scratch."""
        fetcher, workers = self.stored_fetcher(), self.settings.ingest_workers
        return regroup(self.duplicates, fetcher, self.limits, workers=workers, write=write)

    def duplicates_of(self, product_id: str) -> list[Product]:
        """The other members of the product's near-duplicate group (NotFound if unknown)."""
        return group_of(self.catalog, product_id)

    # --- index administration ------------------------------------------------------------
    @property
    def index_admin(self) -> IndexAdmin:
        dim, model_id, p = self.encoder.info.dim, self.encoder.info.model_id, self.progress
        return IndexAdmin(self.settings, self.catalog, dim, model_id, progress=p)

    def build_index(self, plan: IndexPlan | None = None) -> dict[str, Any]:
        """Rebuild the index from stored embeddings (no re-encoding), save it, use it."""
        live = self.metrics.time_searchable(self.index_admin.build(plan))
        live.keep_filters_of(self._live)
        with self._lock:
            self._live = live
        return live.describe()

    def info(self) -> dict[str, Any]:
        """What is indexed, with which model, index and cache; never loads the model."""
        index = self._live.describe() if self._live else describe_index(self.settings)
        runtimes = encoder_runtimes(self.settings, lambda: self.encoder)
        cache = self.caches.backend.describe()
        return describe_engine(self.settings, self.catalog, index, cache, runtimes)


def _f(filters: ProductFilter | None) -> ProductFilter:
    return filters or ProductFilter()
