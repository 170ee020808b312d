"""The Encoder protocol: images and text into one L2-normalised embedding space."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from PIL import Image

T = TypeVar("T")


@dataclass(frozen=True)
class EncoderInfo:
    """What a stored embedding was made with. `model_id` changes whenever the weights do."""

    family: str  # "open_clip", "lit", "onnx"
    name: str  # human-readable: "ViT-B-32/laion2b_s34b_b79k", a checkpoint path
    model_id: str  # stable fingerprint of architecture + weights
    dim: int
    image_size: int


@runtime_checkable
class Encoder(Protocol):
    """Swappable encoder. Implementations load lazily and are safe to share between threads.

    `preprocess` runs in ingest worker threads (no model needed), `encode_pixels` in the
    encoding thread; both together equal `encode_images`.
    """

    @property
    def info(self) -> EncoderInfo:
        """Loads the model if needed."""
        ...

    @property
    def model_id(self) -> str:
        """The fingerprint of `info`, known without loading the model."""
        ...

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image -> float32 array (3, H, W), the model's own preprocessing."""
        ...

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 -> (N, dim) float32, rows L2-normalised."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) float32, rows L2-normalised."""
        ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class LoadOnce(Generic[T]):
    """A value built on first use, under a lock: two threads asking build it once."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None
        self._done = False

    @property
    def loaded(self) -> bool:
        return self._done

    def get(self) -> T:
        if not self._done:
            with self._lock:
                if not self._done:
                    self._value = self._build()
                    self._done = True
        return self._value  # type: ignore[return-value]


class LazyModel:
    """Load-on-first-use under a lock (two threads asking a cold model load it once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False

    def _load(self) -> None:
        raise NotImplementedError

    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True


def encode_images_batched(encoder: Encoder, images: Sequence[Image.Image]) -> np.ndarray:
    """Shared `encode_images`: preprocess each image, then one batched forward pass."""
    if not images:
        return np.zeros((0, encoder.info.dim), dtype=np.float32)
    return encoder.encode_pixels(np.stack([encoder.preprocess(im) for im in images]))
