"""Query embedding cache: image content hash or normalised text -> float32 vector.

Keys include the model id, so a cache shared by servers running different models never
mixes embedding spaces. Vectors are stored as raw little-endian float32 bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from lookalike.cache.base import Cache

FLOAT32 = np.dtype("<f4")


def text_key(model_id: str, text: str) -> str:
    """Key of a text already passed through `normalise_text`."""
    return "t:" + _digest(model_id.encode(), text.encode())


def image_key(model_id: str, image: bytes | Image.Image) -> str:
    """Key of an image: its file bytes, or the pixels of a decoded image."""
    if isinstance(image, Image.Image):
        shape = f"{image.mode}:{image.width}x{image.height}".encode()
        return "p:" + _digest(model_id.encode(), shape, image.tobytes())
    return "b:" + _digest(model_id.encode(), image)


def _digest(*parts: bytes) -> str:
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))  # no two part lists hash alike
        digest.update(part)
    return digest.hexdigest()


class EmbeddingCache:
    def __init__(self, cache: Cache | None, ttl_s: float) -> None:
        self.cache = cache if ttl_s > 0 else None
        self.ttl_s = ttl_s

    def get_or_encode(
        self, keys: Sequence[str], dim: int, encode: Callable[[list[int]], np.ndarray]
    ) -> np.ndarray:
        """(len(keys), dim) vectors: cached ones as stored, the rest from one call of
        `encode(positions)`, which must return their vectors in that order."""
        if self.cache is None:
            return np.asarray(encode(list(range(len(keys)))), dtype=np.float32)
        out = np.empty((len(keys), dim), dtype=np.float32)
        missing: list[int] = []
        for position, raw in enumerate(self.cache.get_many(keys)):
            if raw is not None and len(raw) == dim * FLOAT32.itemsize:
                out[position] = np.frombuffer(raw, dtype=FLOAT32)
            else:
                missing.append(position)
        if missing:
            vectors = np.asarray(encode(missing), dtype=np.float32)
            for position, vector in zip(missing, vectors, strict=True):
                out[position] = vector
                self.cache.set(keys[position], vector.astype(FLOAT32).tobytes(), self.ttl_s)
        return out
