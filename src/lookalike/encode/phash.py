"""Perceptual hashes for near-duplicate detection (PyPI `imagehash`'s pHash).

pHash keeps the signs of the low frequencies of the image's 32x32 grey thumbnail's DCT:
resizing, re-compression and small marks barely move it; mirroring does, so the mirror
image's hash is kept too (a mirrored copy's hash is close to the original's mirror hash).
Both come from one thumbnail (mirroring commutes with resizing).

Cropping moves a whole-image hash as far as an unrelated image's (a 10-20% cut: ~18 of 64
bits), so each image also keeps the hashes of a grid of its own sub-crops (CROP_SCALES of
each side at CROP_POSITIONS): a copy cropped by up to 20% lands near one of them. And a
small colour thumbnail (THUMB_SIDE squared, with the aspect ratio it was squeezed from), on
which `duplicates/crop_match.py` checks that one image really is a crop of another.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

HASH_BITS = 64
THUMBNAIL = 32
THUMB_SIDE = 64
CROP_SCALES = (0.8, 0.9)
CROP_POSITIONS = (0.0, 0.5, 1.0)  # left/top, centre, right/bottom of the room left


class ImageHashes(NamedTuple):
    """What near-duplicate detection stores per image."""

    phash: int  # unsigned 64-bit
    mirror: int  # the mirror image's pHash
    crops: tuple[int, ...] = ()  # pHashes of the sub-crop grid
    thumbnail: bytes = b""  # THUMB_SIDE x THUMB_SIDE RGB, row by row
    aspect: float = 1.0  # width / height the thumbnail was squeezed from


def perceptual_hashes(image: Image.Image, *, crops: bool = True) -> ImageHashes:
    """The image's pHash, its mirror image's and (with `crops`) its sub-crops' and its
    colour thumbnail, which only crop detection reads (they cost 3-8x the two hashes)."""
    grey = image.convert("L")
    small = _thumbnail(grey)
    if not crops:
        return ImageHashes(_phash(small), _phash(ImageOps.mirror(small)))
    thumb = image.convert("RGB").resize((THUMB_SIDE, THUMB_SIDE), Image.BOX)
    return ImageHashes(
        _phash(small),
        _phash(ImageOps.mirror(small)),
        crop_hashes(grey),
        thumb.tobytes(),
        grey.width / grey.height,
    )


def crop_hashes(grey: Image.Image) -> tuple[int, ...]:
    """pHashes of the grey image's sub-crops: each scale of each side, at each position."""
    width, height = grey.size
    thumbnails = []
    for scale in CROP_SCALES:
        w, h = width * scale, height * scale
        for fy in CROP_POSITIONS:
            for fx in CROP_POSITIONS:
                x, y = fx * (width - w), fy * (height - h)
                box = (round(x), round(y), round(x + w), round(y + h))
                thumbnails.append(np.asarray(_thumbnail(grey.crop(box))))
    return phash_batch(np.stack(thumbnails))


def phash_batch(thumbnails: np.ndarray) -> tuple[int, ...]:
    """`imagehash.phash` of many 32x32 grey thumbnails (n, 32, 32) at once, bit for bit:
    the signs of the low 8x8 of their 2-D DCT against its median (one DCT for all)."""
    from scipy.fftpack import dct

    coefficients = dct(dct(thumbnails, axis=1), axis=2)[:, :8, :8]
    medians = np.median(coefficients.reshape(len(thumbnails), -1), axis=1)
    bits = coefficients > medians[:, None, None]
    return tuple(_as_int(b) for b in bits)


def _thumbnail(grey: Image.Image) -> Image.Image:
    return grey.resize((THUMBNAIL, THUMBNAIL), Image.LANCZOS)


def _phash(thumbnail: Image.Image) -> int:
    import imagehash

    return _as_int(imagehash.phash(thumbnail).hash)


def _as_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.ravel().astype(bool)).tobytes(), "big")


def hash_bytes(values: np.ndarray) -> np.ndarray:
    """Unsigned 64-bit hashes (n,) -> (n, 8) uint8 codes, the layout of FAISS binary
    indexes (the hash's bytes, most significant first)."""
    return np.ascontiguousarray(np.asarray(values, dtype=">u8")).view(np.uint8).reshape(-1, 8)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count() if hasattr(int, "bit_count") else bin(a ^ b).count("1")
