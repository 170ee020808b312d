"""Engine: the one service the CLI and the API both call. It wires the layers together:

ingest -> encode -> catalog + index        query -> encode -> index -> catalog -> results
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from lookalike.cache import open_search_caches
from lookalike.cache.embeddings import image_key, text_key
from lookalike.catalog import Catalog, Product, ProductFilter, ProductWrite, open_catalog
from lookalike.config import Settings
from lookalike.encode import Encoder, ImageLimits, content_hash, create_encoder, decode_image
from lookalike.encode.images import to_rgb
from lookalike.errors import ConfigError, InvalidInput, ModelMismatch, NotFound
from lookalike.files.atomic import atomic_write
from lookalike.files.fetch import Fetcher
from lookalike.index import LiveIndex, open_index
from lookalike.index.factory import index_directory, index_planner
from lookalike.index.faiss_index import META_FILE, FaissIndex
from lookalike.index.persist import read_meta
from lookalike.index.planner import IndexPlan
from lookalike.index.tune import TuneReport, tune_index
from lookalike.ingest.pipeline import IngestPipeline, IngestReport
from lookalike.ingest.sources import BadRow, ItemSpec, open_source
from lookalike.metrics import Metrics
from lookalike.search import (
    Diversity,
    SearchResults,
    SearchService,
    hybrid,
    mean_direction,
    subtract,
)
from lookalike.text import normalise_text

ImageInput = bytes | str | Path | Image.Image


@dataclass
class SearchRequest:
    """Any mix of images, texts and an indexed product, plus filters and ranking options."""

    images: Sequence[ImageInput] = ()
    texts: Sequence[str] = ()
    negative_texts: Sequence[str] = ()  # "like this, but not red"
    product_id: str | None = None  # "more like this": its stored embedding, itself excluded
    image_weight: float | None = None  # image side vs text side; default from settings
    multi_image: Literal["mean", "best"] = "mean"  # combine several images, or merge results
    filters: ProductFilter = field(default_factory=ProductFilter)
    rerank: Mapping[str, float] | None = None  # business-signal weights; None = settings
    diversity: Diversity | None = None
    limit: int | None = None


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
        self._open_lock = threading.Lock()
        self.limits = ImageLimits.from_settings(settings)
        self.fetcher = Fetcher(
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.download_timeout_s,
            retries=settings.download_retries,
        )
        self.metrics = Metrics()
        namespace = self.catalog.get_meta("catalog_id") or self.catalog.url
        self.caches = open_search_caches(settings, namespace)
        self.metrics.watch_caches(self.caches.backends)
        self.metrics.index_vectors.set_function(
            lambda: len(self._live.index) if self._live is not None else 0
        )

    # --- lifecycle -----------------------------------------------------------------------
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

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            with self._open_lock:
                if self._encoder is None:
                    self._encoder = create_encoder(self.settings)
        return self._encoder

    @property
    def live_index(self) -> LiveIndex:
        """The index, opened (or rebuilt from stored embeddings) on first use."""
        if self._live is None:
            info = self.encoder.info
            with self._open_lock:
                if self._live is None:
                    self._live = open_index(
                        self.settings,
                        self.catalog,
                        info.dim,
                        info.model_id,
                        progress=self.progress,
                    )
        return self._live

    @property
    def search_service(self) -> SearchService:
        return SearchService(self.catalog, self.live_index, self.settings)

    def sync(self) -> int:
        """Pick up catalog changes made by other processes; returns log entries applied."""
        live = self.live_index
        applied = live.catch_up()
        live.save()
        return applied

    def save(self) -> None:
        self.live_index.save(force=True)

    # --- ingest --------------------------------------------------------------------------
    def index_path(self, location: str | Path) -> IngestReport:
        """Index a folder (recursive) or a CSV/JSONL manifest."""
        return self.index_items(open_source(location), total=count_items(location))

    index_folder = index_path
    index_manifest = index_path

    def index_items(
        self,
        items: Iterable[ItemSpec | BadRow],
        total: int | None = None,
        *,
        write_report: bool = True,
        save_at_end: bool = True,
    ) -> IngestReport:
        """Ingest items. `save_at_end=False` leaves the index snapshot to the periodic
        save (a stream consumer commits many small runs)."""
        pipeline = IngestPipeline(
            self.catalog,
            self.live_index,
            self.encoder,
            self.fetcher,
            self.limits,
            batch_size=self.settings.encode_batch_size,
            workers=self.settings.ingest_workers,
            progress=self.progress,
            save_at_end=save_at_end,
            metrics=self.metrics,
        )
        report = pipeline.run(items, total)
        if write_report:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            report.write(self.settings.data_dir / "reports" / f"ingest-{stamp}.json")
        return report

    def index_path_ray(self, location: str | Path, **options: Any) -> IngestReport:
        """`index_path` on Ray (`lookalike index --engine ray`): the same items, checks and
        results, spread over a Ray cluster's workers; a stopped run resumes. `options` go
        to `RayIngest` (`on_shard_loaded`)."""
        try:
            from lookalike.ingest.ray_pipeline import RayIngest
        except ImportError as exc:
            raise ConfigError(
                f"the Ray engine needs the ray extra: pip install 'lookalike[ray]' ({exc})"
            ) from exc
        info = self.encoder.info
        pipeline = RayIngest(
            self.settings,
            self.catalog,
            self.live_index,
            model_id=info.model_id,
            dim=info.dim,
            progress=self.progress,
            **options,
        )
        report = pipeline.run(
            open_source(location), count_items(location), source=str(Path(location).resolve())
        )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        report.write(self.settings.data_dir / "reports" / f"ingest-ray-{stamp}.json")
        return report

    def reindex(self) -> IngestReport:
        """Re-encode every product from its image source with the current model."""
        specs = (
            ItemSpec(p.id, p.image_source, p.title, p.category, p.brand, p.price, p.attributes)
            for p in self.catalog.iter_products()
        )
        return self.index_items(specs, total=self.catalog.stats().products)

    def upsert(self, item: ItemSpec, image: bytes | None = None) -> Product:
        """Add or replace one product now; searchable when this returns."""
        if image is None:
            report = self.index_items([item], write_report=False)
            if report.failed:
                bad = report.failed[0]
                raise InvalidInput(f"{bad.source}: {bad.reason}")
            return self.catalog.get(item.id)
        decoded = decode_image(image, self.limits, source=item.id)
        digest = content_hash(image)
        product = Product(
            id=item.id,
            title=item.title,
            category=item.category,
            brand=item.brand,
            price=item.price,
            image_source=item.image or str(self._store_media(digest, image)),
            attributes=item.attributes,
            content_hash=digest,
            model_id=self.encoder.model_id,
        )
        vector = self.encoder.encode_images([decoded])[0]
        existed = bool(self.catalog.get_many([item.id]))
        self.catalog.upsert([ProductWrite(product, vector)])
        self.metrics.ingest_items.labels("reencoded" if existed else "added").inc()
        self.live_index.apply_writes()
        return self.catalog.get(item.id)

    def delete(self, product_id: str) -> None:
        if not self.delete_many([product_id]):
            raise NotFound(f"product {product_id!r}")

    def delete_many(self, product_ids: Sequence[str]) -> int:
        """Delete the products that exist (one transaction); returns how many did."""
        deleted = self.catalog.delete(product_ids)
        if deleted:
            self.metrics.ingest_items.labels("deleted").inc(deleted)
            self.live_index.apply_writes()
        return deleted

    def _store_media(self, digest: str, data: bytes) -> Path:
        """Uploaded images are kept by content hash so results can show them."""
        path = self.settings.data_dir / "media" / digest[:2] / digest
        if not path.exists():
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        return path.resolve()

    # --- search --------------------------------------------------------------------------
    def search_image(
        self, image: ImageInput, limit: int | None = None, filters: ProductFilter | None = None
    ) -> SearchResults:
        return self.search(
            SearchRequest(images=[image], limit=limit, filters=filters or ProductFilter())
        )

    def search_text(
        self, text: str, limit: int | None = None, filters: ProductFilter | None = None
    ) -> SearchResults:
        return self.search(
            SearchRequest(texts=[text], limit=limit, filters=filters or ProductFilter())
        )

    def search_similar(
        self, product_id: str, limit: int | None = None, filters: ProductFilter | None = None
    ) -> SearchResults:
        return self.search(
            SearchRequest(product_id=product_id, limit=limit, filters=filters or ProductFilter())
        )

    def search(self, request: SearchRequest) -> SearchResults:
        """Encode and combine the query (images, texts, negative texts, a product), then
        search with filters, re-ranking and diversity."""
        limit = self._check_limit(request.limit)
        if request.multi_image not in ("mean", "best"):
            raise InvalidInput(f"multi_image must be 'mean' or 'best', not {request.multi_image!r}")
        if request.diversity is not None:
            request.diversity.validate()
        started = time.perf_counter()
        image_side: list[np.ndarray] = []
        exclude: list[int] = []
        if request.product_id is not None:
            vector_id, embedding = self.catalog.embedding(request.product_id)
            image_side.append(embedding)
            exclude.append(vector_id)
        if request.images:
            image_side.extend(self._encode_images(request.images))
        texts = [t for t in map(normalise_text, request.texts) if t]
        negatives = [t for t in map(normalise_text, request.negative_texts) if t]
        encoded = self._encode_texts(texts + negatives) if texts or negatives else None
        text_vector = mean_direction(encoded[: len(texts)]) if texts else None
        weight = (
            self.settings.image_weight if request.image_weight is None else request.image_weight
        )
        if request.multi_image == "best" and len(image_side) > 1:
            # Each image (with the text side) is its own query; results merge by best score.
            queries = np.stack([hybrid(v, text_vector, weight) for v in image_side])
        else:
            image_vector = mean_direction(np.stack(image_side)) if image_side else None
            queries = hybrid(image_vector, text_vector, weight)[None, :]
        if negatives:
            negative = mean_direction(encoded[len(texts) :])
            queries = subtract(queries, negative, self.settings.negative_weight)
        encode_ms = (time.perf_counter() - started) * 1000
        self._check_model()
        results = self._ranked(queries, limit, request, exclude)
        results.timings_ms = {"encode_ms": encode_ms, **results.timings_ms}
        results.query_time_ms += encode_ms
        return results

    def get_product(self, product_id: str) -> Product:
        return self.catalog.get(product_id)

    def _check_limit(self, limit: int | None) -> int:
        limit = self.settings.default_limit if limit is None else limit
        if not 1 <= limit <= self.settings.max_limit:
            raise InvalidInput(f"limit must be between 1 and {self.settings.max_limit}")
        return limit

    def _check_model(self) -> None:
        """Refuse to search a catalog that holds no embeddings of the current model."""
        if len(self.live_index.index):
            return  # the index holds only the current model's vectors
        stats = self.catalog.stats()
        if stats.searchable and self.encoder.model_id not in stats.models:
            raise ModelMismatch(
                f"the catalog's {stats.searchable} embeddings were made with "
                f"{', '.join(stats.models)}, not the configured model {self.encoder.model_id}; "
                "run `lookalike reindex` to re-encode, or configure the model it was built with"
            )

    def _encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Query images -> embeddings through the embedding cache (by content hash: the
        file's bytes, or the pixels of an image decoded by the caller)."""
        contents: list[tuple[bytes | Image.Image, str]] = []
        for image in images:
            if isinstance(image, (str, Path)):
                contents.append((self.fetcher.fetch(str(image)), str(image)))
            elif isinstance(image, Image.Image):
                contents.append((to_rgb(image), "upload"))
            else:
                contents.append((bytes(image), "upload"))
        model_id = self.encoder.model_id
        return self.caches.embeddings.get_or_encode(
            [image_key(model_id, content) for content, _ in contents],
            self.encoder.info.dim,
            lambda missing: self.encoder.encode_images(
                [self._decode(*contents[i]) for i in missing]
            ),
        )

    def _decode(self, content: bytes | Image.Image, source: str) -> Image.Image:
        if isinstance(content, Image.Image):
            return content
        return decode_image(content, self.limits, source=source)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """Normalised texts -> embeddings through the embedding cache."""
        model_id = self.encoder.model_id
        return self.caches.embeddings.get_or_encode(
            [text_key(model_id, text) for text in texts],
            self.encoder.info.dim,
            lambda missing: self.encoder.encode_texts([texts[i] for i in missing]),
        )

    def _ranked(
        self, queries: np.ndarray, limit: int, request: SearchRequest, exclude: list[int]
    ) -> SearchResults:
        """Filtered, re-ranked, diversified results for the query vectors, from the result
        cache while the catalog and this process's index are as they were."""
        cache = self.caches.results
        key = None
        if cache.enabled:
            started = time.perf_counter()
            key = cache.key(
                queries,
                {
                    "limit": limit,
                    "filters": request.filters,
                    "exclude": sorted(exclude),
                    "rerank": request.rerank,
                    "diversity": request.diversity,
                    "model": self.encoder.model_id,
                    # Read before searching: a write after this changes the next key.
                    "catalog_version": self.catalog.version(),
                    "index_watermark": self.live_index.watermark,
                },
            )
            cached = cache.get(key)
            if cached is not None:
                elapsed = (time.perf_counter() - started) * 1000
                cached.query_time_ms, cached.timings_ms = elapsed, {"result_cache_ms": elapsed}
                return cached
        results = self.search_service.by_vector(
            queries,
            limit,
            request.filters,
            exclude_vector_ids=exclude,
            rerank=request.rerank,
            diversity=request.diversity,
        )
        if key is not None:
            cache.put(key, results)
        return results

    # --- index maintenance ---------------------------------------------------------------
    def plan_index(self) -> IndexPlan:
        """The index a rebuild would make now (family, parameters, memory estimate)."""
        info = self.encoder.info
        return index_planner(self.settings, self.catalog, info.dim, info.model_id).plan()

    def build_index(self, plan: IndexPlan | None = None) -> dict[str, Any]:
        """Rebuild the index from stored embeddings (no re-encoding), save it, use it."""
        info = self.encoder.info
        planner = index_planner(self.settings, self.catalog, info.dim, info.model_id)
        index = planner.build(plan or planner.plan(), progress=self.progress)
        index.save()
        with self._open_lock:
            self._live = LiveIndex(
                index,
                self.catalog,
                save_interval_s=self.settings.index_save_interval_s,
                maintainer=planner,
                progress=self.progress,
            )
        self._live.catch_up()
        return self._live.describe()

    def tune_index(
        self, target: float | None = None, queries: int = 200, k: int = 100
    ) -> TuneReport:
        """Set efSearch / nprobe to the cheapest value meeting the recall target; saved."""
        live = self.live_index
        live.catch_up()
        if not isinstance(live.index, FaissIndex):
            raise InvalidInput("only FAISS indexes can be tuned")
        report = tune_index(
            live.index,
            self.catalog,
            target=self.settings.recall_target if target is None else target,
            queries=queries,
            k=k,
            progress=self.progress,
        )
        live.save(force=True, changed=True)
        return report

    # --- info ----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What is indexed, with which model and index; never loads the model."""
        stats = self.catalog.stats()
        directory = index_directory(self.settings)
        if self._live is not None:
            index_info: dict[str, Any] = self._live.describe()
        elif self.settings.index_url:  # a vector database: described without connecting
            from lookalike.redact import redact_url

            index_info = {
                "type": "milvus",
                "params": {
                    "uri": redact_url(self.settings.index_url),
                    "collection": self.settings.milvus_collection,
                },
            }
        elif (directory / META_FILE).exists():
            meta = read_meta(directory / META_FILE)
            index_info = {
                "type": meta.kind,
                "dim": meta.dim,
                "watermark": meta.watermark,
                "params": meta.params,
            }
        else:
            index_info = {"type": None}
        from lookalike.encode import model_source

        source = model_source(self.settings)
        return {
            "catalog": self.catalog.url,
            "products": stats.products,
            "searchable": stats.searchable,
            "embeddings_by_model": stats.models,
            "last_update": _iso(stats.last_update),
            "log_head": stats.log_head,
            "index": index_info,
            "model": {"source": source.kind, "name": source.display_name},
            "data_dir": str(self.settings.data_dir.resolve()),
        }


def count_items(location: str | Path) -> int | None:
    """A cheap count for the progress bar's ETA (files in a folder, lines in a manifest)."""
    from lookalike.ingest.sources import IMAGE_SUFFIXES

    path = Path(location)
    if path.is_dir():
        return sum(
            1
            for p in path.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
    if path.is_file():
        with open(path, "rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        return max(lines - (1 if path.suffix.lower() == ".csv" else 0), 0)
    return None


def _iso(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(stamp)) if stamp else None
