"""Hash the catalog images that have no stored hashes (products ingested before near-
duplicate detection or its crop hashes, or by an engine that does not hash): each image is
read back from its stored source through the fetcher the caller grants
(`Engine.stored_fetcher`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from lookalike.catalog.base import Catalog, Product
from lookalike.duplicates.detector import DuplicateFinder, GroupReport
from lookalike.encode.images import ImageLimits, decode_image
from lookalike.encode.phash import ImageHashes, perceptual_hashes
from lookalike.errors import FetchError, InvalidInput
from lookalike.files.fetch import Fetcher

BATCH = 256


@dataclass
class BackfillReport:
    hashed: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # product id -> reason


def hash_missing(
    catalog: Catalog,
    fetcher: Fetcher,
    limits: ImageLimits,
    *,
    workers: int = 4,
    progress: bool = False,
    crops: bool = False,
) -> BackfillReport:
    """Read, decode and hash every searchable product without stored hashes (with
    `crops`: also those stored without the sub-crop hashes crop detection needs)."""
    report = BackfillReport()
    last = -1
    bar = tqdm(desc="hashing images", unit="img", disable=not progress)
    with ThreadPoolExecutor(workers, thread_name_prefix="hash") as pool:
        while True:
            products = catalog.unhashed_products(BATCH, after_vector_id=last, crops=crops)
            if not products:
                break
            last = max(p.vector_id or -1 for p in products)
            rows = []
            for product, result in zip(
                products,
                pool.map(lambda p: _hash(p, fetcher, limits, crops), products),
                strict=True,
            ):
                if isinstance(result, str):
                    report.failed[product.id] = result
                else:
                    rows.append((product.id, int(product.vector_id or 0), result))
            report.hashed += catalog.set_image_hashes(rows)
            bar.update(len(products))
    bar.close()
    return report


def regroup(
    finder: DuplicateFinder, fetcher: Fetcher, limits: ImageLimits, *, workers: int, write: bool
) -> tuple[GroupReport, BackfillReport]:
    """Hash the images that have no hashes, then find every group from scratch (stored
    where `write`); the report counts the items left unhashed."""
    backfill = hash_missing(
        finder.catalog,
        fetcher,
        limits,
        workers=workers,
        progress=finder.progress,
        crops=finder.hashes_crops,
    )
    report = finder.find_all(write=write)
    report.unhashed = len(backfill.failed)
    return report, backfill


def _hash(
    product: Product, fetcher: Fetcher, limits: ImageLimits, crops: bool
) -> ImageHashes | str:
    """The product's hashes, or why its image cannot be read."""
    if not product.image_source:
        return "no image source"
    try:
        image = decode_image(fetcher.fetch(product.image_source), limits, source=product.id)
    except (InvalidInput, FetchError) as exc:
        return getattr(exc, "reason", None) or str(exc)
    return perceptual_hashes(image, crops=crops)
