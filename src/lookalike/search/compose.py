"""Turn several query embeddings into one query vector."""

from __future__ import annotations

import numpy as np

from lookalike.encode.base import l2_normalize
from lookalike.errors import InvalidInput


def mean_direction(vectors: np.ndarray) -> np.ndarray:
    """Normalised mean of normalised vectors: "items like these"."""
    return l2_normalize(l2_normalize(vectors).mean(axis=0))


def hybrid(
    image_vector: np.ndarray | None, text_vector: np.ndarray | None, image_weight: float
) -> np.ndarray:
    """w * image + (1 - w) * text, re-normalised; either side alone passes through."""
    if not 0.0 <= image_weight <= 1.0:
        raise InvalidInput(f"image_weight must be within [0, 1], got {image_weight}")
    if image_vector is None and text_vector is None:
        raise InvalidInput("a query needs at least one image, text or product")
    if text_vector is None:
        return l2_normalize(image_vector)
    if image_vector is None:
        return l2_normalize(text_vector)
    return l2_normalize(
        image_weight * l2_normalize(image_vector) + (1.0 - image_weight) * l2_normalize(text_vector)
    )
