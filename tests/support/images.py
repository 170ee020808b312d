"""Small helpers the tests share (importable, unlike conftest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pattern_image(seed: int, size: int = 64) -> Image.Image:
    """A distinct, seeded RGB image (blocks of colour plus noise)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = np.kron(blocks, np.ones((size // 4, size // 4, 1), dtype=np.uint8))
    noise = rng.integers(-20, 20, image.shape)
    return Image.fromarray(np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8))


def write_images(folder: Path, count: int, *, start: int = 0, categories: int = 2) -> list[Path]:
    paths = []
    for i in range(start, start + count):
        sub = folder / f"cat{i % categories}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"item_{i:04d}.png"
        pattern_image(i).save(path)
        paths.append(path)
    return paths


def pattern_images(count: int, start: int = 0) -> list[Image.Image]:
    return [pattern_image(i) for i in range(start, start + count)]
