"""Batch ingest: read + decode in worker threads while the model encodes; commit per batch.

Each committed batch is one catalog transaction (products, embeddings, change-log entries),
then the index catches up from the log. A crash or Ctrl-C between batches loses only the
batch in flight; the next run skips everything already committed (same content hash and
model), so it resumes without duplicates.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from lookalike.catalog.base import Catalog, Product, ProductWrite
from lookalike.encode.base import Encoder
from lookalike.encode.images import ImageLimits
from lookalike.files.atomic import write_text_atomic
from lookalike.files.fetch import Fetcher
from lookalike.files.local import RECORDED_ROOTS_KEY, with_recorded
from lookalike.index.live import LiveIndex
from lookalike.ingest.prepare import Prepared, prepare_item
from lookalike.ingest.sources import BadRow, ItemSpec
from lookalike.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    added: int = 0
    reencoded: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    failed: list[BadRow] = field(default_factory=list)
    # Ids of versioned items (queue events) the catalog refused at commit: it had a newer
    # version by then. They are counted above as what they were prepared to be, too.
    stale: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def seen(self) -> int:
        return (
            self.added + self.reencoded + self.metadata_updated + self.unchanged + len(self.failed)
        )

    def summary(self) -> str:
        rate = self.seen / self.elapsed_s if self.elapsed_s > 0 else 0.0
        text = (
            f"{self.added} added, {self.reencoded} re-encoded, {self.metadata_updated} metadata "
            f"updated, {self.unchanged} unchanged, {len(self.failed)} failed "
            f"in {self.elapsed_s:.1f}s ({rate:.1f} items/s)"
        )
        if self.stale:
            text += f"; {len(self.stale)} refused as older than the catalog's version"
        return text + (" - interrupted, run again to resume" if self.interrupted else "")

    def record(self, prepared: Prepared) -> str:
        """Count one prepared item under what the ingest does with it; returns the outcome
        (failed, unchanged, metadata, reencoded, added)."""
        if prepared.action == "failed":
            self.failed.append(prepared.failure)
            return "failed"
        if prepared.action == "unchanged":
            self.unchanged += 1
            return "unchanged"
        if prepared.action == "metadata":
            self.metadata_updated += 1
            return "metadata"
        if prepared.existed:
            self.reencoded += 1
            return "reencoded"
        self.added += 1
        return "added"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["failed_count"] = len(self.failed)
        return data

    def write(self, path: Path) -> Path:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2))
        return path


class DuplicateHook(Protocol):
    """Keeps near-duplicate groups current around writes (`duplicates.DuplicateFinder`)."""

    def before_write(self, product_ids: Sequence[str]) -> set[str]: ...

    def after_write(self, product_ids: Sequence[str], left: Iterable[str] = ()) -> None: ...

    def after_delete(self, left: Iterable[str]) -> None: ...

    @property
    def hashes_crops(self) -> bool:
        """Whether writes must carry the sub-crop hashes (crop detection is on)."""
        ...


def grouped_write(hook: DuplicateHook | None, product_ids: Sequence[str], write) -> None:
    """Run `write()`, then regroup the written products (a failure there is logged: the
    write stands, and `lookalike near-duplicates` recomputes every group)."""
    if hook is None:
        write()
        return
    left = _logged(lambda: hook.before_write(product_ids), set())
    write()
    _logged(lambda: hook.after_write(product_ids, left), None)


def grouped_delete(hook: DuplicateHook | None, product_ids: Sequence[str], delete) -> int:
    """Run `delete()` (returns how many were deleted), then re-check the groups the deleted
    products were in."""
    if hook is None:
        return delete()
    left = _logged(lambda: hook.before_write(product_ids), set())
    deleted = delete()
    if deleted and left:
        _logged(lambda: hook.after_delete(left), None)
    return deleted


def _logged(step, default):
    try:
        return step()
    except Exception:  # never fail a committed write over its groups
        log.exception("near-duplicate groups not updated")
        return default


class IngestPipeline:
    def __init__(
        self,
        catalog: Catalog,
        index: LiveIndex,
        encoder: Encoder,
        fetcher: Fetcher,
        limits: ImageLimits,
        *,
        batch_size: int = 32,
        workers: int = 4,
        progress: bool = False,
        save_at_end: bool = True,
        metrics: Metrics | None = None,
        duplicates: DuplicateHook | None = None,
    ) -> None:
        self.duplicates = duplicates
        self.catalog = catalog
        self.index = index
        self.encoder = encoder
        self.fetcher = fetcher
        self.limits = limits
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress
        self.save_at_end = save_at_end
        self.metrics = metrics

    def run(self, items: Iterable[ItemSpec | BadRow], total: int | None = None) -> IngestReport:
        record_local_roots(self.catalog, self.fetcher.local_roots)
        report = IngestReport()
        started = time.monotonic()
        bar = tqdm(
            total=total, desc="ingest", unit="img", disable=not self.progress, smoothing=0.05
        )
        to_encode: list[Prepared] = []
        metadata: list[ProductWrite] = []
        try:
            for prepared in self._prepare_all(items):
                bar.update(1)
                self._tally(prepared, report)
                if prepared.action == "encode":
                    to_encode.append(prepared)
                elif prepared.action == "metadata":
                    metadata.append(ProductWrite(prepared.product, version=prepared.version))
                if len(to_encode) >= self.batch_size:
                    self._commit(to_encode, metadata, report)
                    to_encode, metadata = [], []
            self._commit(to_encode, metadata, report)
        except KeyboardInterrupt:
            report.interrupted = True
            raise
        finally:
            bar.close()
            self.index.save(force=self.save_at_end)
            report.elapsed_s = time.monotonic() - started
        return report

    # --- worker side ---------------------------------------------------------------------
    def _prepare_all(self, items: Iterable[ItemSpec | BadRow]) -> Iterator[Prepared]:
        """Yield prepared items in completion order, keeping a bounded number in flight."""
        in_flight: set[Future[Prepared]] = set()
        limit = self.workers * 8
        with ThreadPoolExecutor(self.workers, thread_name_prefix="ingest") as pool:
            try:
                for chunk in _chunked(items, 256):
                    specs = [s for s in chunk if isinstance(s, ItemSpec)]
                    for bad in (s for s in chunk if isinstance(s, BadRow)):
                        yield Prepared("failed", failure=bad)
                    existing = self.catalog.get_many([s.id for s in specs])
                    for spec in specs:
                        while len(in_flight) >= limit:
                            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                            yield from (f.result() for f in done)
                        in_flight.add(pool.submit(self._prepare, spec, existing.get(spec.id)))
                while in_flight:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in done)
            finally:
                for future in in_flight:
                    future.cancel()

    def _prepare(self, spec: ItemSpec, existing: Product | None) -> Prepared:
        crops = self.duplicates is not None and self.duplicates.hashes_crops
        return prepare_item(
            spec, existing, self.fetcher, self.limits, self.encoder, hash_crops=crops
        )

    # --- encoding thread -----------------------------------------------------------------
    def _commit(
        self, to_encode: list[Prepared], metadata: list[ProductWrite], report: IngestReport
    ) -> None:
        writes = list(metadata)
        if to_encode:
            vectors = self.encoder.encode_pixels(np.stack([p.pixels for p in to_encode]))
            writes.extend(
                ProductWrite(p.product, v, p.version, hashes=p.hashes)
                for p, v in zip(to_encode, vectors, strict=True)
            )
        if not writes:
            return

        def write() -> None:
            report.stale.extend(self.catalog.upsert(writes).stale)
            self.index.apply_writes()

        grouped_write(self.duplicates, [p.product.id for p in to_encode], write)

    def _tally(self, prepared: Prepared, report: IngestReport) -> None:
        outcome = report.record(prepared)
        if self.metrics is not None:
            if outcome == "failed":
                self.metrics.ingest_errors.inc()
            else:
                self.metrics.ingest_items.labels(outcome).inc()


def record_local_roots(catalog: Catalog, roots: Sequence[str | Path]) -> None:
    """Remember the folders an ingest may read images from, so the API can serve those
    images later and a reindex can read them again (see `files.fetch.served_roots`)."""
    if roots:
        updated = with_recorded(catalog.get_meta(RECORDED_ROOTS_KEY), roots)
        if updated is not None:
            catalog.set_meta(RECORDED_ROOTS_KEY, updated)


def _chunked(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
