"""Training data: catalog items -> (image, caption variants) pairs, splits, images, batches.

Items come from the same sources `lookalike index` reads (folder, CSV, JSONL). Items whose
`split` attribute is `test` never reach training (they are what `lookalike eval` measures
on); `val`/`validation` items are the validation set, else a seeded slice of the rest.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from lookalike.encode.images import ImageLimits, decode_image
from lookalike.errors import FetchError, InvalidInput
from lookalike.files.fetch import Fetcher
from lookalike.ingest.sources import BadRow, ItemSpec, open_source
from lookalike.train.captions import caption_variants

log = logging.getLogger(__name__)

GiB = 1024**3
HELD_OUT = {"test"}
VALIDATION = {"val", "validation"}


@dataclass
class Splits:
    train: list[ItemSpec]
    val: list[ItemSpec]
    held_out: int  # `split: test` items, left for `lookalike eval`
    bad_rows: list[BadRow] = field(default_factory=list)


def read_items(source: str | Path, limit: int | None = None) -> tuple[list[ItemSpec], list[BadRow]]:
    """Every usable item of a folder or manifest (at most `limit`), and the rows we skipped."""
    items: list[ItemSpec] = []
    bad: list[BadRow] = []
    for entry in open_source(source):
        if isinstance(entry, BadRow):
            bad.append(entry)
        elif entry.image:
            items.append(entry)
        if limit is not None and len(items) >= limit:
            break
    return items, bad


def split_items(
    items: Sequence[ItemSpec], *, val_fraction: float, val_max: int, seed: int
) -> Splits:
    """Train / validation by the `split` attribute, else a seeded hash of the id."""
    train: list[ItemSpec] = []
    val: list[ItemSpec] = []
    held_out = 0
    undecided: list[tuple[str, ItemSpec]] = []
    for item in items:
        split = str(item.attributes.get("split", "")).lower()
        if split in HELD_OUT:
            held_out += 1
        elif split in VALIDATION:
            val.append(item)
        else:
            key = hashlib.sha256(f"{seed}:{item.id}".encode()).hexdigest()
            undecided.append((key, item))
    if not val and val_fraction > 0 and len(undecided) > 1:
        # The items with the smallest hashes form the validation set: stable as items are added.
        count = min(val_max, max(1, round(len(undecided) * val_fraction)))
        chosen = {key for key, _ in sorted(undecided, key=lambda pair: pair[0])[:count]}
        val = [item for key, item in undecided if key in chosen]
        train.extend(item for key, item in undecided if key not in chosen)
    else:
        train.extend(item for _, item in undecided)
    return Splits(train=train, val=val[:val_max] if val_max else val, held_out=held_out)


class CaptionTable:
    """Distinct caption texts, each with an integer id (identical texts share the id)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._ids: dict[str, int] = {}

    def add(self, text: str) -> int:
        if text not in self._ids:
            self._ids[text] = len(self.texts)
            self.texts.append(text)
        return self._ids[text]

    def variants(self, items: Sequence[ItemSpec]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, V) caption ids padded with the first variant, and (N,) variant counts."""
        rows = [[self.add(text) for text in caption_variants(item)] for item in items]
        width = max((len(r) for r in rows), default=1)
        table = torch.tensor([r + [r[0]] * (width - len(r)) for r in rows], dtype=torch.long)
        counts = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return table.reshape(len(rows), width), counts


class ImageStore:
    """Preprocessed images of a list of items: decoded once; kept in memory (as `dtype`;
    float16 halves the memory of a training set) when they fit in `cache_bytes`, else
    decoded again for every batch."""

    def __init__(
        self,
        items: Sequence[ItemSpec],
        preprocess: Callable[[Image.Image], np.ndarray],
        limits: ImageLimits,
        *,
        workers: int = 4,
        cache_bytes: int = 2 * GiB,
        dtype: np.dtype | type = np.float16,
        progress: bool = False,
        desc: str = "images",
        fetcher: Fetcher | None = None,
    ) -> None:
        self.preprocess = preprocess
        self.limits = limits
        self.workers = workers
        # The caller grants local access (the training source's folder): without a
        # fetcher only http(s) images are read.
        self._fetcher = fetcher or Fetcher(max_bytes=limits.max_bytes)
        self.failed: list[BadRow] = []
        # Every image preprocesses to the same shape: measure it on a blank one.
        per_image = preprocess(Image.new("RGB", (256, 256), "white")).size
        per_image *= np.dtype(dtype).itemsize
        keep = per_image * len(items) <= cache_bytes
        kept: list[ItemSpec] = []
        arrays: list[np.ndarray] = []
        with (
            ThreadPoolExecutor(workers) as pool,
            tqdm(total=len(items), desc=desc, unit="img", disable=not progress) as bar,
        ):
            for item, result in zip(items, pool.map(self._try_load, items), strict=True):
                bar.update(1)
                if isinstance(result, BadRow):
                    self.failed.append(result)
                    continue
                kept.append(item)
                if keep:
                    arrays.append(result.astype(dtype))
        self.items = kept
        self._cache = torch.from_numpy(np.stack(arrays)) if keep and arrays else None
        if not keep:
            log.info(
                "%d images exceed the %d-byte cache: decoding per batch", len(kept), cache_bytes
            )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def get(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Float32 pixels (B, 3, H, W) of the items at `indices`."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if self._cache is not None:
            return self._cache[index].float()
        with ThreadPoolExecutor(self.workers) as pool:
            arrays = list(pool.map(lambda i: self._load(self.items[i]), index.tolist()))
        return torch.from_numpy(np.stack(arrays))

    def _try_load(self, item: ItemSpec) -> np.ndarray | BadRow:
        try:
            return self._load(item)
        except (InvalidInput, FetchError) as exc:
            return BadRow(item.id, item.image or item.id, getattr(exc, "reason", str(exc)))

    def _load(self, item: ItemSpec) -> np.ndarray:
        return self.preprocess(load_image(item, self._fetcher, self.limits))


def load_image(item: ItemSpec, fetcher: Fetcher, limits: ImageLimits) -> Image.Image:
    """The item's image, fetched and decoded under `limits` (InvalidInput/FetchError)."""
    source = item.image or item.id
    return decode_image(fetcher.fetch(source), limits, source=source)


def load_images(
    items: Sequence[ItemSpec], fetcher: Fetcher, limits: ImageLimits, workers: int = 4
) -> list[Image.Image | BadRow]:
    """Each item's image, or the BadRow saying why it could not be read, in order."""

    def one(item: ItemSpec) -> Image.Image | BadRow:
        try:
            return load_image(item, fetcher, limits)
        except (InvalidInput, FetchError) as exc:
            return BadRow(item.id, item.image or item.id, getattr(exc, "reason", str(exc)))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, items))


def step_generator(seed: int, *keys: int) -> torch.Generator:
    """A generator that depends only on (seed, keys): resuming at a step replays it exactly."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(count, generator=step_generator(seed, 1, epoch))


def augment(pixels: torch.Tensor, generator: torch.Generator, shift: float = 0.1) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to `shift` of the side (edges
    repeated), per image, drawn from `generator`."""
    batch, _, height, width = pixels.shape
    flip = torch.rand(batch, generator=generator) < 0.5
    pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
    pad = round(min(height, width) * shift)
    if pad == 0:
        return pixels
    padded = F.pad(pixels, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).tolist()
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).tolist()
    return torch.stack(
        [
            padded[i, :, y : y + height, x : x + width]
            for i, (x, y) in enumerate(zip(dx, dy, strict=True))
        ]
    )


def sample_captions(
    variants: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One caption id per row, uniformly among that row's variants."""
    choice = (torch.rand(len(counts), generator=generator) * counts).long()
    return variants[torch.arange(len(counts)), choice.clamp(max=variants.shape[1] - 1)]


def batches(order: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    """Full batches only (a ragged last batch would weaken the contrastive signal),
    unless there is less than one batch of data."""
    if len(order) <= batch_size:
        yield order
        return
    for start in range(0, len(order) - batch_size + 1, batch_size):
        yield order[start : start + batch_size]


def steps_per_epoch(count: int, batch_size: int) -> int:
    return max(1, count // batch_size)
