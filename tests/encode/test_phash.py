"""The batched pHash of the sub-crop grid is imagehash's pHash, bit for bit (the crop
hashes are compared with whole-image hashes imagehash made)."""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from lookalike.encode.phash import THUMBNAIL, crop_hashes, perceptual_hashes, phash_batch
from tests.support.images import pattern_image

DATA = Path(__file__).parents[1] / "duplicates" / "data"


def as_int(image: Image.Image) -> int:
    bits = imagehash.phash(image).hash.ravel()
    return int.from_bytes(np.packbits(bits.astype(bool)).tobytes(), "big")


def test_the_batch_is_imagehash_bit_for_bit() -> None:
    images = [Image.open(DATA / "chess-piece.png").convert("L")] + [
        pattern_image(seed, size=96).convert("L") for seed in range(6)
    ]
    thumbnails = [im.resize((THUMBNAIL, THUMBNAIL), Image.LANCZOS) for im in images]
    assert phash_batch(np.stack([np.asarray(t) for t in thumbnails])) == tuple(
        as_int(t) for t in thumbnails
    )


def test_an_image_keeps_its_hashes_its_sub_crop_grid_and_a_thumbnail() -> None:
    image = Image.open(DATA / "chess-piece.png").convert("RGB")
    stored = perceptual_hashes(image)
    assert stored.phash == as_int(image.convert("L").resize((32, 32), Image.LANCZOS))
    assert stored.crops == crop_hashes(image.convert("L")) and len(stored.crops) == 18
    assert len(set(stored.crops)) > 9  # the sub-crops differ from one another
    assert len(stored.thumbnail) == 64 * 64 * 3
    assert stored.aspect == image.width / image.height
