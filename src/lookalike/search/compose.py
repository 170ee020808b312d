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


def subtract(query: np.ndarray, negative: np.ndarray, weight: float) -> np.ndarray:
    """Like this, but not that: query - weight * negative, re-normalised.

    Works on one query (dim,) or several (n, dim) against one negative direction. A query
    that the subtraction cancels (it *is* the negative) is refused rather than turned into
    noise.
    """
    if not 0.0 <= weight <= 1.0:
        raise InvalidInput(f"negative weight must be within [0, 1], got {weight}")
    shifted = l2_normalize(query) - weight * l2_normalize(negative)
    if np.any(np.linalg.norm(np.atleast_2d(shifted), axis=-1) < 1e-6):
        raise InvalidInput("the negative text cancels the whole query")
    return l2_normalize(shifted)
