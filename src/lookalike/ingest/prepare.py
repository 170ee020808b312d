"""One item's preparation, shared by every ingest engine (local threads, Ray workers).

fetch -> content hash -> skip-unchanged decision -> decode + validate -> model preprocessing
(and the perceptual hashes near-duplicate detection uses).
Bad items come back as `failed` with a reason; nothing here raises for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lookalike.catalog.base import Product
from lookalike.encode.base import Encoder
from lookalike.encode.images import ImageLimits, content_hash, decode_image
from lookalike.encode.phash import ImageHashes, perceptual_hashes
from lookalike.errors import FetchError, InvalidInput
from lookalike.files.fetch import Fetcher
from lookalike.ingest.sources import BadRow, ItemSpec

Action = Literal["encode", "metadata", "unchanged", "failed"]


@dataclass
class Prepared:
    """An item after its worker is done with it."""

    action: Action
    product: Product | None = None
    pixels: np.ndarray | None = None
    failure: BadRow | None = None
    existed: bool = False
    version: int | None = None  # the item's version (queue events), for the catalog write
    hashes: ImageHashes | None = None  # perceptual hashes, for near-duplicates


def product_from_spec(spec: ItemSpec, model_id: str) -> Product:
    """The catalog record an item would become (content hash filled in once read)."""
    return Product(
        id=spec.id,
        title=spec.title,
        category=spec.category,
        brand=spec.brand,
        price=spec.price,
        image_source=spec.image,
        attributes=spec.attributes,
        model_id=model_id,
    )


def skip_action(existing: Product | None, product: Product) -> Action | None:
    """`unchanged` / `metadata` when the stored embedding still fits (same content hash and
    model), else None: the image must be encoded."""
    if (
        existing is None
        or existing.vector_id is None
        or existing.content_hash != product.content_hash
        or existing.model_id != product.model_id
    ):
        return None
    return "unchanged" if existing.metadata_key() == product.metadata_key() else "metadata"


def prepare_item(
    spec: ItemSpec,
    existing: Product | None,
    fetcher: Fetcher,
    limits: ImageLimits,
    encoder: Encoder,
    *,
    hash_crops: bool = False,
) -> Prepared:
    """Read, hash, decide and preprocess one item; `existing` is its catalog record, if any.
    `hash_crops`: also the sub-crop hashes and thumbnail crop detection needs."""
    product = product_from_spec(spec, encoder.model_id)
    source = spec.image or spec.id
    version = spec.version
    try:
        if spec.image is None:
            # Metadata without an image: kept, but only searchable if it had a vector.
            return Prepared("metadata", product, version=version)
        data = fetcher.fetch(spec.image)
        product.content_hash = content_hash(data)
        skip = skip_action(existing, product)
        if skip == "unchanged" and version is not None and version > existing.version:
            skip = "metadata"  # same content, but the catalog must learn the new version
        if skip is not None:
            return Prepared(skip, product, version=version)
        image = decode_image(data, limits, source=source, shrink_to=encoder.info.image_size)
        pixels = encoder.preprocess(image)
        return Prepared(
            "encode",
            product,
            pixels=pixels,
            existed=existing is not None,
            version=version,
            hashes=perceptual_hashes(image, crops=hash_crops),
        )
    except (InvalidInput, FetchError) as exc:
        return Prepared("failed", failure=BadRow(spec.id, source, failure_reason(exc)))


def failure_reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or str(exc)
