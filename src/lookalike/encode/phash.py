"""Perceptual hashes for near-duplicate detection (PyPI `imagehash`'s pHash).

pHash keeps the signs of the low frequencies of the image's 32x32 grey thumbnail's DCT:
resizing, re-compression and small marks barely move it; mirroring does, so the mirror
image's hash is kept too (a mirrored copy's hash is close to the original's mirror hash).
Both come from one thumbnail (mirroring commutes with resizing).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

HASH_BITS = 64
THUMBNAIL = 32


def perceptual_hashes(image: Image.Image) -> tuple[int, int]:
    """(pHash, pHash of the mirror image) as unsigned 64-bit ints."""
    import imagehash

    grey = image.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.LANCZOS)
    return (
        _as_int(imagehash.phash(grey).hash),
        _as_int(imagehash.phash(ImageOps.mirror(grey)).hash),
    )


def _as_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.ravel().astype(bool)).tobytes(), "big")


def hash_bytes(values: np.ndarray) -> np.ndarray:
    """Unsigned 64-bit hashes (n,) -> (n, 8) uint8 codes, the layout of FAISS binary
    indexes (the hash's bytes, most significant first)."""
    return np.ascontiguousarray(np.asarray(values, dtype=">u8")).view(np.uint8).reshape(-1, 8)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count() if hasattr(int, "bit_count") else bin(a ^ b).count("1")
