"""Real-time product writes (the API's PUT and DELETE): one product in, searchable out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from lookalike.catalog.base import Catalog, Product, ProductWrite
from lookalike.encode.base import Encoder
from lookalike.encode.images import ImageLimits, content_hash, decode_image
from lookalike.encode.phash import perceptual_hashes
from lookalike.errors import InvalidInput, NotFound
from lookalike.index.live import LiveIndex
from lookalike.ingest.media import store_media
from lookalike.ingest.pipeline import DuplicateHook, IngestReport, grouped_delete, grouped_write
from lookalike.ingest.sources import BadRow, ItemSpec
from lookalike.metrics import Metrics

BatchIngest = Callable[[Iterable[ItemSpec | BadRow]], IngestReport]


class ProductWriter:
    """Upserts and deletes that are searchable when they return (the index applies the
    catalog's change log right after each commit)."""

    def __init__(
        self,
        catalog: Catalog,
        index: LiveIndex,
        encoder: Encoder,
        limits: ImageLimits,
        metrics: Metrics,
        media_dir: Path,
        ingest: BatchIngest,
        duplicates: DuplicateHook | None = None,
    ) -> None:
        self.duplicates = duplicates
        self.catalog = catalog
        self.index = index
        self.encoder = encoder
        self.limits = limits
        self.metrics = metrics
        self.media_dir = media_dir
        self.ingest = ingest  # items whose image is a source to read: the batch pipeline

    def upsert(self, item: ItemSpec, image: bytes | None = None) -> Product:
        """Add or replace one product now. `image`: its bytes (an upload); else the item's
        image source is read as a batch ingest would (unchanged content is not re-encoded)."""
        if image is None:
            report = self.ingest([item])
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
            image_source=item.image or str(store_media(self.media_dir, digest, image)),
            attributes=item.attributes,
            content_hash=digest,
            model_id=self.encoder.model_id,
        )
        vector = self.encoder.encode_images([decoded])[0]
        existed = bool(self.catalog.get_many([item.id]))

        def write() -> None:
            hashes = perceptual_hashes(decoded)
            self.catalog.upsert([ProductWrite(product, vector, hashes=hashes)])
            self.metrics.ingest_items.labels("reencoded" if existed else "added").inc()
            self.index.apply_writes()

        grouped_write(self.duplicates, [item.id], write)
        return self.catalog.get(item.id)

    def delete(self, product_id: str) -> None:
        if not self.delete_many([product_id]):
            raise NotFound(f"product {product_id!r}")

    def delete_many(self, product_ids: Sequence[str]) -> int:
        """Delete the products that exist (one transaction); returns how many did."""

        def delete() -> int:
            deleted = self.catalog.delete(product_ids)
            if deleted:
                self.metrics.ingest_items.labels("deleted").inc(deleted)
                self.index.apply_writes()
            return deleted

        return grouped_delete(self.duplicates, product_ids, delete)
