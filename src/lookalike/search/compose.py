"""Compose: a request's images, texts, negative texts and product -> query vector(s).

The vector arithmetic (hybrid weights, means, negative directions) is at the bottom; the
`QueryComposer` stage above it encodes the inputs through the embedding cache first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lookalike.cache.embeddings import EmbeddingCache, image_key, text_key
from lookalike.catalog.base import Catalog
from lookalike.encode.base import Encoder, l2_normalize
from lookalike.errors import InvalidInput
from lookalike.search.request import QueryContext, SearchRequest
from lookalike.text import normalise_text

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.encode.images import ImageLimits
    from lookalike.files.fetch import Fetcher


@dataclass
class ComposedQuery:
    """Query vectors ready for the index: one row, or one per image for `best` queries."""

    vectors: np.ndarray  # (n, dim) float32, rows L2-normalised
    exclude: frozenset[int]  # vector ids never to return (the product a query is "like")
    context: QueryContext
    encode_ms: float


class QueryComposer:
    """Encodes a request's inputs (cached by image content or text) and combines them."""

    def __init__(
        self,
        encoder: Encoder,
        embeddings: EmbeddingCache,
        catalog: Catalog,
        fetcher: Fetcher,
        limits: ImageLimits,
        *,
        image_weight: float = 0.7,
        negative_weight: float = 0.5,
    ) -> None:
        self.encoder = encoder
        self.embeddings = embeddings
        self.catalog = catalog
        self.fetcher = fetcher
        self.limits = limits
        self.image_weight = image_weight
        self.negative_weight = negative_weight

    def compose(self, request: SearchRequest) -> ComposedQuery:
        started = time.perf_counter()
        image_side: list[np.ndarray] = []
        exclude: set[int] = set()
        if request.product_id is not None:
            vector_id, embedding = self.catalog.embedding(request.product_id)
            image_side.append(embedding)
            exclude.add(vector_id)
        if request.images:
            image_side.extend(self._encode_images(request.images))
        texts = [t for t in map(normalise_text, request.texts) if t]
        negatives = [t for t in map(normalise_text, request.negative_texts) if t]
        encoded = self._encode_texts(texts + negatives) if texts or negatives else None
        text_vector = mean_direction(encoded[: len(texts)]) if texts else None
        weight = self.image_weight if request.image_weight is None else request.image_weight
        if request.multi_image == "best" and len(image_side) > 1:
            # Each image (with the text side) is its own query; results merge by best score.
            queries = np.stack([hybrid(v, text_vector, weight) for v in image_side])
        else:
            image_vector = mean_direction(np.stack(image_side)) if image_side else None
            queries = hybrid(image_vector, text_vector, weight)[None, :]
        if negatives:
            negative = mean_direction(encoded[len(texts) :])
            queries = subtract(queries, negative, self.negative_weight)
        encode_ms = (time.perf_counter() - started) * 1000
        return ComposedQuery(queries, frozenset(exclude), QueryContext.of(request), encode_ms)

    def _encode_images(self, images) -> np.ndarray:
        """Query images -> embeddings through the embedding cache (by content hash: the
        file's bytes, or the pixels of an image decoded by the caller)."""
        from PIL import Image

        from lookalike.encode.images import check_request_pixels, to_rgb

        contents: list[tuple[bytes | Image.Image, str]] = []
        for image in images:
            if isinstance(image, (str, Path)):
                contents.append((self._fetch(str(image)), str(image)))
            elif isinstance(image, Image.Image):
                contents.append((to_rgb(image), "upload"))
            else:
                contents.append((bytes(image), "upload"))
        # The request's pixel budget, from the headers, before anything is decoded.
        encoded = [(content, source) for content, source in contents if isinstance(content, bytes)]
        check_request_pixels(encoded, self.limits)
        model_id = self.encoder.model_id
        return self.embeddings.get_or_encode(
            [image_key(model_id, content) for content, _ in contents],
            self.encoder.info.dim,
            lambda missing: self.encoder.encode_images(
                [self._decode(*contents[i]) for i in missing]
            ),
        )

    def _fetch(self, location: str) -> bytes:
        """A query image named by a URL or a path. Only the CLI and library callers name
        paths (the API passes bytes), and a caller naming a file grants its folder."""
        from lookalike.files.fetch import REMOTE_PREFIXES
        from lookalike.files.local import local_path

        if location.lower().startswith(REMOTE_PREFIXES):
            return self.fetcher.fetch(location)
        return self.fetcher.with_local_roots([local_path(location).parent]).fetch(location)

    def _decode(self, content: bytes | Image.Image, source: str) -> Image.Image:
        from PIL import Image

        from lookalike.encode.images import decode_image

        if isinstance(content, Image.Image):
            return content
        return decode_image(
            content, self.limits, source=source, shrink_to=self.encoder.info.image_size
        )

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """Normalised texts -> embeddings through the embedding cache."""
        model_id = self.encoder.model_id
        return self.embeddings.get_or_encode(
            [text_key(model_id, text) for text in texts],
            self.encoder.info.dim,
            lambda missing: self.encoder.encode_texts([texts[i] for i in missing]),
        )


# --- vector arithmetic -----------------------------------------------------------------
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
