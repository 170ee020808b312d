"""Fashion-MNIST as a product catalog: PNG images + a JSONL manifest.

Fashion-MNIST (Zalando Research, MIT licence) holds 70,000 28x28 grayscale product photos
in 10 classes: 60,000 `train` and 10,000 `test`. We read the four IDX files from a local
folder (Debian's `dataset-fashion-mnist` package installs them under
/usr/share/datasets/fashion-mnist) or download them from the public source, then write
each image as a 64x64 PNG (dark product on white, as shop photos are shown; 64 px clears
the default `min_image_side`) and one manifest line with title, category (the class name),
and seeded synthetic brand, price, rating and popularity.

The builder is idempotent: PNGs that exist are kept, the manifest is rewritten atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lookalike.demo.fashion_queries import CLASSES, eval_queries
from lookalike.errors import FetchError, InvalidInput
from lookalike.files.atomic import atomic_write

SPLITS = {"train": 60_000, "test": 10_000}
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# MD5 of the upstream .gz files, as published in the Fashion-MNIST README. Debian recompresses
# them (different .gz bytes, same content), so local files are checked by their IDX headers.
UPSTREAM_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
IMAGE_SIDE = 64
MANIFEST = "catalog.jsonl"
QUERIES = "eval_queries.json"

BRANDS = (
    "Northwind",
    "Kestrel",
    "Alder & Co",
    "Lumen",
    "Marlow",
    "Tidewater",
    "Orchard",
    "Halcyon",
    "Brightline",
    "Fernhill",
    "Solano",
    "Quarry",
)
# Neutral words only: none may name a season, sport or material that an eval query tests.
STYLES = ("Classic", "Essential", "Everyday", "Signature", "Studio", "Original")
# Typical price range (EUR) per class, for plausible synthetic prices.
PRICE_RANGE = {
    "T-shirt/top": (8, 40),
    "Trouser": (25, 120),
    "Pullover": (25, 110),
    "Dress": (30, 180),
    "Coat": (60, 320),
    "Sandal": (15, 90),
    "Shirt": (20, 90),
    "Sneaker": (40, 160),
    "Bag": (25, 400),
    "Ankle boot": (50, 240),
}


@dataclass
class CatalogSummary:
    manifest: Path
    items: dict[str, int]  # split -> count
    written: int  # PNG files written this run (the rest existed)
    source: str


def find_source(source_dir: Path | None = None) -> Path | None:
    """The folder holding the four IDX files (`.gz` or not), or None when there is none."""
    candidates = [source_dir] if source_dir is not None else [DEBIAN_DIR]
    for folder in candidates:
        if folder is not None and all(_idx_path(folder, name) for name in FILES.values()):
            return folder
    return None


def download(target: Path, *, base_url: str = DOWNLOAD_URL, timeout_s: float = 60.0) -> Path:
    """Fetch the four .gz files from the public source into `target` (MD5-checked)."""
    import httpx

    target.mkdir(parents=True, exist_ok=True)
    for name, md5 in UPSTREAM_MD5.items():
        path = target / name
        if path.exists() and _md5(path.read_bytes()) == md5:
            continue
        try:
            response = httpx.get(base_url + name, timeout=timeout_s, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot download {base_url + name}: {exc}") from exc
        if _md5(response.content) != md5:
            raise FetchError(f"{name}: checksum mismatch (expected MD5 {md5})")
        atomic_write(path, lambda tmp, data=response.content: Path(tmp).write_bytes(data))
    return target


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of one split, headers checked."""
    images = _read_idx(_idx_path(folder, FILES[(split, "images")]), magic=2051)
    labels = _read_idx(_idx_path(folder, FILES[(split, "labels")]), magic=2049)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise InvalidInput(
            f"{folder}: {split} images {images.shape} do not match labels {labels.shape}"
        )
    if labels.size and int(labels.max()) >= len(CLASSES):
        raise InvalidInput(f"{folder}: {split} labels go up to {labels.max()}, expected 0-9")
    return images, labels


def build_catalog(
    out_dir: Path,
    source_dir: Path | None = None,
    *,
    seed: int = 0,
    allow_download: bool = True,
    progress: bool = True,
    workers: int = 4,
) -> CatalogSummary:
    """Write `out_dir/images/<split>/<class>/*.png`, `catalog.jsonl` and `eval_queries.json`.

    Without `source_dir`, the Debian folder is used when present, else the files are
    downloaded into `out_dir/source` (when `allow_download`).
    """
    folder = find_source(source_dir)
    if folder is None:
        if source_dir is not None:
            raise InvalidInput(
                f"{source_dir} lacks the Fashion-MNIST IDX files ({', '.join(FILES.values())})"
            )
        if not allow_download:
            raise InvalidInput(
                f"Fashion-MNIST not found in {DEBIAN_DIR}: install the Debian package "
                "`dataset-fashion-mnist` or allow the download"
            )
        folder = download(out_dir / "source")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    counts: dict[str, int] = {}
    jobs: list[tuple[Path, np.ndarray]] = []
    for split in SPLITS:
        images, labels = read_split(folder, split)
        counts[split] = len(images)
        for row, path in _rows(split, labels, out_dir, seed):
            rows.append(row)
            if not path.exists():
                jobs.append((path, images[row["source_index"]]))
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(total=len(jobs), desc="demo images", unit="img", disable=not progress) as bar,
    ):
        for _ in pool.map(lambda job: _write_png(*job), jobs):
            bar.update(1)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    manifest = out_dir / MANIFEST
    atomic_write(manifest, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    queries_text = json.dumps(eval_queries(), indent=2, ensure_ascii=False)
    atomic_write(
        out_dir / QUERIES, lambda tmp: Path(tmp).write_text(queries_text, encoding="utf-8")
    )
    return CatalogSummary(manifest, counts, len(jobs), str(folder))


def class_slug(name: str) -> str:
    return name.lower().replace("/", "-").replace(" ", "-")


def _rows(split: str, labels: np.ndarray, out_dir: Path, seed: int) -> Iterator[tuple[dict, Path]]:
    # One generator per split, drawn in index order: the same seed gives the same catalog.
    rng = np.random.default_rng([seed, list(SPLITS).index(split)])
    n = len(labels)
    brands = rng.integers(0, len(BRANDS), n)
    styles = rng.integers(0, len(STYLES), n)
    price_u = rng.random(n)
    ratings = np.clip(rng.normal(4.0, 0.6, n), 1.0, 5.0)
    popularity = np.floor(rng.lognormal(3.0, 1.2, n)).astype(int)
    for i, label in enumerate(labels.tolist()):
        category = CLASSES[label]
        low, high = PRICE_RANGE[category]
        # Log-uniform in the class's range, ending in .99 like shop prices.
        price = round(float(np.floor(low * (high / low) ** price_u[i])) + 0.99, 2)
        relative = Path("images") / split / class_slug(category) / f"fmnist-{split}-{i:05d}.png"
        row = {
            "id": f"fmnist-{split}-{i:05d}",
            "image": relative.as_posix(),
            "title": f"{BRANDS[brands[i]]} {STYLES[styles[i]]} {category}",
            "category": category,
            "brand": BRANDS[brands[i]],
            "price": price,
            "rating": round(float(ratings[i]), 1),
            "popularity": int(popularity[i]),
            "split": split,
            "source_index": i,
        }
        yield row, out_dir / relative


def _write_png(path: Path, pixels: np.ndarray) -> None:
    # Fashion-MNIST is a light product on black; shops show dark products on white.
    image = Image.fromarray(255 - pixels, mode="L").resize(
        (IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BICUBIC
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temp file + rename: a crash never leaves a half-written PNG that a re-run would keep.
    # No fsync per image: these are regenerated from the source on demand.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx(path: Path | None, *, magic: int) -> np.ndarray:
    if path is None:
        raise InvalidInput("a Fashion-MNIST IDX file is missing")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from exc
    if len(data) < 8:
        raise InvalidInput(f"{path}: too short for an IDX file")
    found, count = struct.unpack(">II", data[:8])
    if found != magic:
        raise InvalidInput(f"{path}: IDX magic {found}, expected {magic}")
    dims = (count,)
    if magic == 2051:
        dims = (count, *struct.unpack(">II", data[8:16]))
    offset = 4 + 4 * len(dims)
    expected = offset + int(np.prod(dims))
    if len(data) != expected:
        raise InvalidInput(f"{path}: {len(data)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
