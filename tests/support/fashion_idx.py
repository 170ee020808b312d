"""Small synthetic Fashion-MNIST IDX files whose classes a tiny model can learn."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def class_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """28x28 uint8 images: a bright bar whose row depends on the class, over noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        top = 2 + 2 * int(label)
        images[i, top : top + 6, 4:24] = 220
    return images


def write_idx(folder: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Write gzipped IDX image and label files for each split, labels cycling 0..9."""
    folder.mkdir(parents=True, exist_ok=True)
    for offset, (split, count) in enumerate(counts.items()):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = class_images(labels, seed + offset)
        image_name, label_name = NAMES[split]
        with gzip.open(folder / image_name, "wb") as handle:
            handle.write(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        with gzip.open(folder / label_name, "wb") as handle:
            handle.write(struct.pack(">II", 2049, count) + labels.tobytes())
    return folder
