"""The synthetic near-duplicate set: distinct clip-art images (Debian's `openclipart-png`)
with generated near-copies at known transformations, and hard negatives.

Bases are chosen so the task is honest:
- drawn from `/usr/share/openclipart/png` (8,121 files in 22 folders; `apt-get install
  openclipart-png`, 131 MB download, 154 MB installed);
- flattened on white, shrunk to at most 256 px a side (product-photo sizes);
- with visible content: the 32x32 grey thumbnail a perceptual hash sees has a standard
  deviation of at least MIN_CONTENT_STD (thin line art on white hashes to noise, and no
  product photo looks like that);
- mutually distinct: no two bases within DISTINCT_BITS bits of each other's perceptual hash
  (or its mirror), so openclipart's own duplicates (the same icon in two sets) never count
  as false positives;
- taken whole sub-folders at a time (playing cards, stars, flowchart shapes, flags...), so
  each base has look-alike siblings: the hard negatives (different products of one class).

Fashion-MNIST is not used: its 28x28 items of one class differ by a few pixels, so "a
different product of the same class" is often closer, by hash and by embedding, than a 20%
crop of the same item; the set would measure the data set, not the detector.

Every copy is made from its base with one transformation (`TRANSFORMS`), seeded.
"""

from __future__ import annotations

import io
import json
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

OPENCLIPART = Path("/usr/share/openclipart/png")
MAX_SIDE = 256
MIN_SIDE = 100
MIN_CONTENT_STD = 25.0
DISTINCT_BITS = 12


def _resize(image: Image.Image, rng: random.Random) -> Image.Image:
    scale = rng.uniform(0.4, 0.7)
    w, h = image.size
    return image.resize((max(50, round(w * scale)), max(50, round(h * scale))), Image.LANCZOS)


def _jpeg(image: Image.Image, rng: random.Random) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(25, 50))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _mirror(image: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.mirror(image)


def _crop(image: Image.Image, rng: random.Random) -> Image.Image:
    """Keep 80-95% of each side (up to 20% cut), at a random offset."""
    w, h = image.size
    keep_w, keep_h = round(w * rng.uniform(0.8, 0.95)), round(h * rng.uniform(0.8, 0.95))
    x, y = rng.randint(0, w - keep_w), rng.randint(0, h - keep_h)
    return image.crop((x, y, x + keep_w, y + keep_h))


def _watermark(image: Image.Image, rng: random.Random) -> Image.Image:
    """A half-transparent label over 15-20% of the width in a corner."""
    base = image.convert("RGBA")
    w, h = base.size
    side = round(w * rng.uniform(0.15, 0.2))
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x = rng.choice([4, w - side - 4])
    y = rng.choice([4, h - side // 2 - 4])
    draw.rectangle((x, y, x + side, y + side // 2), fill=(40, 40, 40, 140))
    draw.text((x + 3, y + 2), "SHOP", fill=(255, 255, 255, 220))
    return Image.alpha_composite(base, layer).convert("RGB")


TRANSFORMS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "resize": _resize,
    "jpeg": _jpeg,
    "mirror": _mirror,
    "crop": _crop,
    "watermark": _watermark,
}


@dataclass
class SyntheticSet:
    manifest_bases: Path  # JSONL of the bases only
    manifest_copies: Path  # JSONL of the copies only
    base_of: dict[str, str]  # item id -> its base id (a base maps to itself)
    transform_of: dict[str, str]  # copy id -> transformation
    folder_of: dict[str, str]  # base id -> its openclipart sub-folder (hard-negative class)


def _open(path: Path, min_side: int) -> Image.Image | None:
    """The file as RGB on white, or None when it is too small, too large or unreadable."""
    from lookalike.encode.images import to_rgb

    try:
        with Image.open(path) as raw:
            if min(raw.size) < min_side or max(raw.size) > 4000:
                return None
            return to_rgb(raw).copy()
    except (OSError, Image.DecompressionBombError):
        return None


def _grey_std(image: Image.Image) -> float:
    return float(np.asarray(image.convert("L").resize((32, 32), Image.LANCZOS)).std())


def select_bases(
    count: int, seed: int = 0, root: Path = OPENCLIPART
) -> list[tuple[str, Image.Image]]:
    """(sub-folder, image) pairs by the rules in the module docstring."""
    import imagehash

    by_folder: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.rglob("*.png")):
        by_folder[str(path.parent.relative_to(root))].append(path)
    folders = sorted(f for f, paths in by_folder.items() if len(paths) >= 2)
    random.Random(seed).shuffle(folders)
    chosen: list[tuple[str, Image.Image]] = []
    hashes: list[imagehash.ImageHash] = []
    for folder in folders:
        kept_here = 0
        for path in by_folder[folder]:
            image = _open(path, MIN_SIDE)
            if image is None:
                continue
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
            if min(image.size) < 80 or _grey_std(image) < MIN_CONTENT_STD:
                continue
            grey = image.convert("L").resize((32, 32), Image.LANCZOS)
            h, hm = imagehash.phash(grey), imagehash.phash(ImageOps.mirror(grey))
            if any(min(h - other, hm - other) <= DISTINCT_BITS for other in hashes):
                continue
            hashes.append(h)
            chosen.append((folder, image))
            kept_here += 1
            if kept_here >= 12 or len(chosen) >= count:
                break
        if len(chosen) >= count:
            break
    return chosen


def build_set(directory: Path, count: int = 400, seed: int = 0) -> SyntheticSet:
    """Write bases and copies as PNG (the JPEG copy as JPEG) with two manifests."""
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    bases, copies = [], []
    base_of: dict[str, str] = {}
    transform_of: dict[str, str] = {}
    folder_of: dict[str, str] = {}
    for n, (folder, image) in enumerate(select_bases(count, seed)):
        base_id = f"base-{n:04d}"
        image.save(images / f"{base_id}.png")
        base_of[base_id] = base_id
        folder_of[base_id] = folder
        category = folder.split("/")[0]
        bases.append(
            {"id": base_id, "image": f"images/{base_id}.png", "title": folder, "category": category}
        )
        for name, transform in TRANSFORMS.items():
            copy_id = f"{base_id}-{name}"
            suffix = "jpg" if name == "jpeg" else "png"
            copy = transform(image, rng)
            copy.save(images / f"{copy_id}.{suffix}", quality=95)
            base_of[copy_id] = base_id
            transform_of[copy_id] = name
            copies.append(
                {
                    "id": copy_id,
                    "image": f"images/{copy_id}.{suffix}",
                    "title": folder,
                    "category": category,
                }
            )
    manifest_bases = directory / "bases.jsonl"
    manifest_copies = directory / "copies.jsonl"
    manifest_bases.write_text("".join(json.dumps(row) + "\n" for row in bases))
    manifest_copies.write_text("".join(json.dumps(row) + "\n" for row in copies))
    return SyntheticSet(manifest_bases, manifest_copies, base_of, transform_of, folder_of)


def build_training_manifest(directory: Path, root: Path = OPENCLIPART) -> Path:
    """Every usable openclipart image (flattened, at most 128 px) with a title made from its
    file name and its top folder as category: what a shop trains its own model on."""
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, path in enumerate(sorted(root.rglob("*.png"))):
        image = _open(path, 50)
        if image is None:
            continue
        image.thumbnail((128, 128), Image.LANCZOS)
        if min(image.size) < 50:
            continue
        name = f"clip-{n:05d}.png"
        image.save(images / name)
        relative = path.relative_to(root)
        title = " ".join(path.stem.replace("-", "_").split("_"))
        rows.append(
            {
                "id": f"clip-{n:05d}",
                "image": f"images/{name}",
                "title": title,
                "category": relative.parts[0],
            }
        )
    manifest = directory / "train.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest
