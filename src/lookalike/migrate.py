"""Copy an embedded installation (SQLite catalog and stored embeddings) to servers
(PostgreSQL, and a vector database such as Milvus) without re-encoding anything.

Products are copied in batches, each one catalog transaction; a product already in the
target with the same image (content hash) and model is skipped, or gets only its metadata
updated, so re-running copies just what changed since, and an interrupted run resumes.
The target vector store is then filled from the target catalog's stored embeddings, or,
when it exists already, brought up to date from the catalog's change log.
Products deleted from the source after a copy are not deleted from the target. Versions
are copied too: a product the target holds at a newer version (written there since) is
kept as it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from tqdm.auto import tqdm

from lookalike.catalog import Catalog, Product, ProductWrite, open_catalog
from lookalike.config import Settings
from lookalike.errors import ConfigError


@dataclass
class MigrationReport:
    copied: int = 0  # with their embeddings (new, or a different image or model)
    metadata_updated: int = 0
    unchanged: int = 0
    newer_in_target: int = 0  # the target's version is newer: kept
    index: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def summary(self) -> str:
        index = self.index
        where = (
            f"; index: {index.get('type')} with {index.get('vectors')} vectors"
            if index
            else "; no index copied (give --index)"
        )
        newer = f", {self.newer_in_target} newer in the target" if self.newer_in_target else ""
        return (
            f"{self.copied} copied, {self.metadata_updated} metadata updated, "
            f"{self.unchanged} unchanged{newer} in {self.elapsed_s:.1f}s{where}"
        )


def migrate_installation(
    source: Settings, target: Settings, *, progress: bool = True, batch_size: int = 500
) -> MigrationReport:
    """Copy `source`'s catalog (and fill `target.index_url`, when set) into `target`."""
    if source.catalog_location == target.catalog_location:
        raise ConfigError("the target catalog is the source catalog; give another --catalog")
    started = time.monotonic()
    report = MigrationReport()
    src = open_catalog(source)
    try:
        dst = open_catalog(target)
        try:
            _copy_products(src, dst, report, progress=progress, batch_size=batch_size)
            if target.index_url:
                report.index = _fill_index(source, target, src, dst, progress=progress)
        finally:
            dst.close()
    finally:
        src.close()
    report.elapsed_s = time.monotonic() - started
    return report


def _copy_products(
    src: Catalog, dst: Catalog, report: MigrationReport, *, progress: bool, batch_size: int
) -> None:
    total = src.stats().products
    with tqdm(total=total, desc="products", unit="item", disable=not progress) as bar:
        batch: list[Product] = []
        for product in src.iter_products(batch_size):
            batch.append(product)
            if len(batch) >= batch_size:
                _copy_batch(src, dst, batch, report)
                bar.update(len(batch))
                batch = []
        _copy_batch(src, dst, batch, report)
        bar.update(len(batch))


def _copy_batch(src: Catalog, dst: Catalog, batch: list[Product], report: MigrationReport):
    if not batch:
        return
    existing = dst.get_many([p.id for p in batch])
    embeddings = src.embeddings_by_vector_ids(
        [p.vector_id for p in batch if p.vector_id is not None]
    )
    writes: list[ProductWrite] = []
    for product in batch:
        old = existing.get(product.id)
        same_vector = old is not None and (
            old.content_hash == product.content_hash
            and old.model_id == product.model_id
            and (old.vector_id is None) == (product.vector_id is None)
        )
        copy = replace(product, vector_id=None)
        if (
            same_vector
            and old.metadata_key() == product.metadata_key()
            and old.version == product.version
        ):
            report.unchanged += 1
        elif same_vector:
            writes.append(ProductWrite(copy, version=product.version))
            report.metadata_updated += 1
        else:
            vector = embeddings.get(product.vector_id) if product.vector_id is not None else None
            writes.append(ProductWrite(copy, vector, product.version))
            report.copied += 1
    stale = set(dst.upsert(writes).stale)
    for write in writes:
        if write.product.id in stale:
            report.newer_in_target += 1
            if write.embedding is None:
                report.metadata_updated -= 1
            else:
                report.copied -= 1


def _fill_index(
    source: Settings, target: Settings, src: Catalog, dst: Catalog, *, progress: bool
) -> dict[str, Any]:
    from lookalike.index import open_index

    model_id = _model_to_index(source, src)
    if model_id is None:
        return {"type": None, "vectors": 0}
    _, vectors = next(iter(dst.iter_embeddings(batch_size=1, model_id=model_id)))
    live = open_index(target, dst, vectors.shape[1], model_id, progress=progress)
    live.save(force=True)
    return live.describe()


def _model_to_index(source: Settings, catalog: Catalog) -> str | None:
    """The catalog's only model, or the configured one when it holds several."""
    models = catalog.stats().models
    if not models:
        return None
    if len(models) == 1:
        return next(iter(models))
    from lookalike.encode import create_encoder

    configured = create_encoder(source).model_id  # builds, does not load, the encoder
    if configured not in models:
        raise ConfigError(
            f"the catalog holds embeddings of {', '.join(sorted(models))}; configure one of "
            "them (LOOKALIKE_MODEL_*) to choose which the vector store gets"
        )
    return configured
