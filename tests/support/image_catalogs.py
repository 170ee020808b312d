"""Small image catalogs written in code: good images plus every kind of bad item."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

# id -> what is wrong with it (the reason the ingest must report contains this text)
BAD_ITEMS = {
    "bad-truncated": "corrupt or truncated",
    "bad-empty": "empty file",
    "bad-not-image": "not an image",
    "bad-missing": "file not found",
    "bad-small": "too small",
}


def png_bytes(seed: int, size: int = 64) -> bytes:
    """A distinct random RGB image (distinct embeddings even from a random-init model)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_catalog(root: Path, good: int = 18) -> Path:
    """A JSONL manifest of `good` images, the bad items above and one invalid line, in an
    order that puts bad items in several shards. Returns the manifest path."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    bad = iter(BAD_ITEMS)
    for i in range(good):
        path = images / f"item-{i:03d}.png"
        path.write_bytes(png_bytes(i))
        rows.append(
            json.dumps(
                {
                    "id": f"item-{i:03d}",
                    "image": f"images/{path.name}",
                    "title": f"item {i}",
                    "category": ["shoes", "bags", "hats"][i % 3],
                    "price": 10.0 + i,
                    "color": ["red", "blue"][i % 2],
                }
            )
        )
        if i % 4 == 1:
            name = next(bad, None)
            if name is not None:
                rows.append(json.dumps({"id": name, "image": f"images/{name}.png"}))
    rows.extend(json.dumps({"id": name, "image": f"images/{name}.png"}) for name in bad)
    whole = png_bytes(1000)
    (images / "bad-truncated.png").write_bytes(whole[: len(whole) // 2])
    (images / "bad-empty.png").write_bytes(b"")
    (images / "bad-not-image.png").write_bytes(b"this is not an image at all")
    (images / "bad-small.png").write_bytes(png_bytes(1001, size=20))
    rows.insert(7, "{not json")
    manifest = root / "catalog.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest
