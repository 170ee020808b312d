"""A labelled sample of a training source encoded with a trained model: what `lookalike
train` calibrates the new model's relevance floor on (`search/calibration.py`), before any
catalog holds its embeddings. The sample stands in for the catalog: its k-th best
similarities are over the sample, a little lower than over a whole catalog, so the floor it
gives errs low; `lookalike index` calibrates again on the catalog itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.config import Settings
from lookalike.encode.base import Encoder
from lookalike.encode.images import ImageLimits
from lookalike.files.fetch import Fetcher, ingest_roots
from lookalike.train.data import ImageStore, read_items

SAMPLE = 3_000


def encoded_sample(
    source: str | Path,
    encoder: Encoder,
    settings: Settings,
    *,
    size: int = SAMPLE,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(vectors, labels, category names) of up to `size` items with a category, chosen at
    random (seeded)."""
    items, _ = read_items(source)
    items = [item for item in items if item.category]
    rng = np.random.default_rng(seed)
    if len(items) > size:
        items = [items[i] for i in np.sort(rng.choice(len(items), size, replace=False))]
    fetcher = Fetcher.from_settings(settings, local_roots=ingest_roots(source, settings))
    store = ImageStore(
        items,
        encoder.preprocess,
        ImageLimits.from_settings(settings),
        workers=settings.ingest_workers,
        dtype=np.float32,
        progress=progress,
        desc="calibration images",
        fetcher=fetcher,
    )
    names = sorted({str(item.category) for item in store.items})
    labels = np.asarray([names.index(str(item.category)) for item in store.items])
    chunks = [
        encoder.encode_pixels(store.get(list(range(start, min(start + 512, len(store))))).numpy())
        for start in range(0, len(store), 512)
    ]
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, encoder.info.dim), np.float32)
    return vectors, labels, names
