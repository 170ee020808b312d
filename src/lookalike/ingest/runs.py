"""Whole ingest runs as the CLI and consumers start them: a local pipeline over items, or
the same items on Ray workers; each run's report is saved under the data dir's `reports/`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.encode.base import Encoder
from lookalike.encode.images import ImageLimits
from lookalike.errors import ConfigError
from lookalike.files.fetch import Fetcher, served_roots
from lookalike.files.local import RECORDED_ROOTS_KEY, recorded_roots
from lookalike.index.live import LiveIndex
from lookalike.ingest.pipeline import DuplicateHook, IngestPipeline, IngestReport
from lookalike.ingest.sources import BadRow, ItemSpec, count_items, open_source
from lookalike.metrics import Metrics


def stored_fetcher(fetcher: Fetcher, settings: Settings, catalog: Catalog) -> Fetcher:
    """Reads back image sources the catalog holds (reindex, metadata-only writes): remote,
    or local under the media folder, media_roots and earlier index runs' roots."""
    recorded = recorded_roots(catalog.get_meta(RECORDED_ROOTS_KEY))
    return fetcher.with_local_roots(served_roots(settings, recorded))


def stored_items(catalog: Catalog) -> Iterator[ItemSpec]:
    """Every product as an item to ingest again from its stored image (a reindex)."""
    for p in catalog.iter_products():
        yield ItemSpec(p.id, p.image_source, p.title, p.category, p.brand, p.price, p.attributes)


def ingest_items(
    settings: Settings,
    catalog: Catalog,
    index: LiveIndex,
    encoder: Encoder,
    fetcher: Fetcher,
    metrics: Metrics,
    items: Iterable[ItemSpec | BadRow],
    total: int | None = None,
    *,
    progress: bool = False,
    write_report: bool = True,
    save_at_end: bool = True,
    duplicates: DuplicateHook | None = None,
) -> IngestReport:
    """Ingest items locally. `save_at_end=False` leaves the index snapshot to the periodic
    save (a stream consumer commits many small runs)."""
    pipeline = IngestPipeline(
        catalog,
        index,
        encoder,
        fetcher,
        ImageLimits.from_settings(settings),
        batch_size=settings.encode_batch_size,
        workers=settings.ingest_workers,
        progress=progress,
        save_at_end=save_at_end,
        metrics=metrics,
        duplicates=duplicates,
    )
    report = pipeline.run(items, total)
    if write_report:
        save_report(report, settings.data_dir, "ingest")
    return report


def ingest_on_ray(
    settings: Settings,
    catalog: Catalog,
    index: Callable[[], LiveIndex],
    encoder: Encoder,
    location: str | Path,
    *,
    progress: bool = False,
    **options: Any,
) -> IngestReport:
    """A folder or manifest on Ray: the same items, checks and results as the local ingest,
    spread over a Ray cluster's workers; a stopped run resumes. `index` opens the index,
    once Ray is known to be installed. `options` go to `RayIngest`."""
    ray_ingest = require_ray()
    info = encoder.info
    pipeline = ray_ingest(
        settings,
        catalog,
        index(),
        model_id=info.model_id,
        dim=info.dim,
        progress=progress,
        **options,
    )
    report = pipeline.run(
        open_source(location), count_items(location), source=str(Path(location).resolve())
    )
    save_report(report, settings.data_dir, "ingest-ray")
    return report


def require_ray() -> type:
    """The Ray ingest class, or ConfigError saying how to install the extra."""
    try:
        from lookalike.ingest.ray_pipeline import RayIngest
    except ImportError as exc:
        raise ConfigError(
            f"the Ray engine needs the ray extra: pip install 'lookalike[ray]' ({exc})"
        ) from exc
    return RayIngest


def save_report(report: IngestReport, data_dir: Path, prefix: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return report.write(data_dir / "reports" / f"{prefix}-{stamp}.json")
