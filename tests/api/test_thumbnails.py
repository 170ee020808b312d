"""The thumbnail folder is bounded by size and pruned least recently used first (a served
thumbnail counts as used), on real files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.api.thumbnails import LOW_WATER, ThumbnailCache
from lookalike.encode import ImageLimits
from tests.support.api_catalog import CatalogItem


def noisy_images(folder: Path, count: int) -> list[Path]:
    """Photos whose thumbnails are tens of KB (noise compresses badly)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)
        path = folder / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def on_disk(cache: ThumbnailCache) -> int:
    return sum(path.stat().st_size for path in cache.directory.glob("*/*.jpg"))


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_folder_stays_under_its_bound(tmp_path: Path) -> None:
    images = noisy_images(tmp_path / "images", 12)
    cache = ThumbnailCache(tmp_path / "thumbs", ImageLimits(), max_bytes=150_000)
    sizes = []
    for image in images:
        cache.get(image, 256)
        sizes.append(on_disk(cache))
    assert max(sizes) <= 150_000
    assert sizes[-1] >= 150_000 * LOW_WATER / 2  # pruned to the low-water mark, not emptied
    assert len(list(cache.directory.glob("*/*.jpg"))) < len(images)


def test_the_least_recently_used_go_first(tmp_path: Path) -> None:
    images = noisy_images(tmp_path / "images", 6)
    cache = ThumbnailCache(tmp_path / "thumbs", ImageLimits(), max_bytes=10**9)
    thumbs = [cache.get(image, 256) for image in images[:5]]
    for i, thumb in enumerate(thumbs):  # made an hour ago, the first the longest
        age(thumb, 3600 - i)
    assert cache.get(images[0], 256) == thumbs[0]  # served again: used now
    cache.max_bytes = on_disk(cache) + 1  # the next thumbnail passes the bound
    cache.get(images[5], 256)
    left = {path for path in thumbs if path.exists()}
    assert thumbs[0] in left and thumbs[1] not in left  # the oldest unused went first
    assert on_disk(cache) <= cache.max_bytes * LOW_WATER


def test_a_thumbnail_used_lately_is_not_rewritten_on_every_request(tmp_path: Path) -> None:
    (image,) = noisy_images(tmp_path / "images", 1)
    cache = ThumbnailCache(tmp_path / "thumbs", ImageLimits(), max_bytes=10**9)
    thumb = cache.get(image, 128)
    age(thumb, 10)
    before = thumb.stat().st_mtime
    cache.get(image, 128)
    assert thumb.stat().st_mtime == before


def test_the_server_bounds_its_thumbnails_by_the_setting(
    client: TestClient, catalog_items: list[CatalogItem]
) -> None:
    thumbnails = client.app.state.thumbnails
    assert thumbnails.max_bytes == client.app.state.settings.thumbnail_cache_bytes
    response = client.get(f"/v1/images/{catalog_items[0].id}", params={"size": 64})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert on_disk(thumbnails) > 0
