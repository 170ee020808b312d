"""Real-time product writes (the API's PUT and DELETE): one product in, searchable out."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from lookalike.catalog.base import Catalog, Product, ProductWrite, WriteOutcome
from lookalike.encode.base import Encoder
from lookalike.encode.images import ImageLimits, content_hash, decode_images
from lookalike.encode.phash import perceptual_hashes
from lookalike.errors import InvalidInput, NotFound
from lookalike.index.live import LiveIndex
from lookalike.ingest.media import MediaStore
from lookalike.ingest.pipeline import DuplicateHook, IngestReport, grouped_delete, grouped_write
from lookalike.ingest.prepare import product_from_spec
from lookalike.ingest.sources import BadRow, ItemSpec
from lookalike.metrics import Metrics

BatchIngest = Callable[[Iterable[ItemSpec | BadRow]], IngestReport]


class ProductWriter:
    """Upserts and deletes that are searchable when they return (the index applies the
    catalog's change log right after each commit). Each takes the product's next version,
    unless it names one (queue events)."""

    def __init__(
        self,
        catalog: Catalog,
        index: LiveIndex,
        encoder: Encoder,
        limits: ImageLimits,
        metrics: Metrics,
        media: MediaStore,
        ingest: BatchIngest,
        duplicates: DuplicateHook | None = None,
    ) -> None:
        self.duplicates = duplicates
        self.catalog = catalog
        self.index = index
        self.encoder = encoder
        self.limits = limits
        self.metrics = metrics
        self.media = media
        self.ingest = ingest  # items whose image is a source to read: the batch pipeline

    def upsert(self, item: ItemSpec, image: bytes | None = None) -> Product:
        """Add or replace one product now. `image`: its bytes (an upload); else the item's
        image source is read as a batch ingest would (unchanged content is not re-encoded).
        A stored upload the product no longer points at is deleted if nothing else does."""
        before = self.catalog.get_many([item.id]).get(item.id)
        if image is None:
            product = self._upsert_from_source(item)
        else:
            product = self._upsert_upload(item, image, existed=before is not None)
        if before is not None and before.image_source != product.image_source:
            self.media.release([before.image_source])
        return product

    def _upsert_from_source(self, item: ItemSpec) -> Product:
        # A stored upload (a metadata-only change keeps it) stays locked until the product
        # commits, so a delete of its last other product cannot take the file meanwhile.
        held = self.media.holding(item.image) if item.image else contextlib.nullcontext()
        with held:
            report = self.ingest([item])
        if report.failed:
            bad = report.failed[0]
            raise InvalidInput(f"{bad.source}: {bad.reason}")
        return self.catalog.get(item.id)

    def _upsert_upload(self, item: ItemSpec, image: bytes, *, existed: bool) -> Product:
        shrink_to = self.encoder.info.image_size
        (decoded,) = decode_images([(image, item.id)], self.limits, shrink_to=shrink_to)
        digest = content_hash(image)
        product = product_from_spec(item, self.encoder.model_id)
        product.content_hash = digest
        vector = self.encoder.encode_images([decoded])[0]
        crops = self.duplicates is not None and self.duplicates.hashes_crops
        hashes = perceptual_hashes(decoded, crops=crops)

        def write() -> None:
            if item.image:  # fetched from its URL: nothing to store
                self.catalog.upsert([ProductWrite(product, vector, hashes=hashes)])
            else:
                with self.media.storing(digest, image) as path:
                    product.image_source = str(path)
                    self.catalog.upsert([ProductWrite(product, vector, hashes=hashes)])
            self.metrics.ingest_items.labels("reencoded" if existed else "added").inc()
            self.index.apply_writes()

        grouped_write(self.duplicates, [item.id], write)
        return self.catalog.get(item.id)

    def delete(self, product_id: str) -> None:
        if not self.delete_many([product_id]):
            raise NotFound(f"product {product_id!r}")

    def delete_many(self, product_ids: Sequence[str]) -> int:
        """Delete the products that exist (one transaction), then the stored uploads only
        they pointed at; returns how many products were deleted. Each leaves a tombstone at
        its next version."""
        return len(self.delete_versions(dict.fromkeys(product_ids)).changed)

    def delete_versions(self, versions: Mapping[str, int | None]) -> WriteOutcome:
        """Delete products at these versions (queue events); older ones are refused. The
        stored uploads only the deleted products pointed at go with them, and the
        near-duplicate groups they were in are checked again."""
        before = self.catalog.get_many(list(versions))
        outcome = WriteOutcome()

        def delete() -> int:
            nonlocal outcome
            outcome = self.catalog.delete_versions(versions)
            if outcome.changed:
                self.metrics.ingest_items.labels("deleted").inc(len(outcome.changed))
                self.index.apply_writes()
            return len(outcome.changed)

        grouped_delete(self.duplicates, list(versions), delete)
        gone = set(outcome.changed)
        self.media.release(p.image_source for pid, p in before.items() if pid in gone)
        return outcome
