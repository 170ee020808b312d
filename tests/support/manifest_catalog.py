"""A small catalog on disk for engine-level congruence tests: images of random blocks and a
CSV manifest with the fields filters use; and the check that two engines answered alike."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = ["red", "green", "blue", "black"]


def write_manifest(root: Path, n: int = 24) -> Path:
    """`n` products `sku-0`, `sku-1`, ... with images under `root/images`; the CSV's path."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        path = root / "images" / f"item{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        rows.append(
            {
                "id": f"sku-{i}",
                "image": f"images/item{i}.png",
                "title": f"item {i}",
                "category": ["shoes", "hats", "bags"][i % 3],
                "brand": ["acme", "zed"][i % 2],
                "price": f"{5 + i * 3.5:.2f}",
                "color": COLORS[i % 4],
                "size": str(i % 5),
            }
        )
    manifest = root / "catalog.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def assert_same_hits(a, b) -> None:
    """The same products in the same order, with the same scores (float noise aside)."""
    assert [h.product.id for h in a.hits] == [h.product.id for h in b.hits]
    np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], atol=1e-4)
