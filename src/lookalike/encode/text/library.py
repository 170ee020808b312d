"""The sentence-transformers library as a text tower: any folder it loads, on any device.

Slow to import (seconds) and needs the `train` extra, so it is chosen only for folders
the numpy tower cannot reproduce (other architectures, dense layers), or when asked for
by name (`sentence-transformers:<folder or hub id>`). Its fingerprint is the one every
trained model has recorded: the numpy tower computes the same value without torch.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.encode.text.base import TextSource, TextTowerOptions, empty
from lookalike.errors import ModelError

BATCH_SIZE = 256


def claims(path: Path) -> bool:
    return (path / "modules.json").is_file()


class LibraryTower:
    """TextTower on `sentence_transformers.SentenceTransformer`."""

    def __init__(self, name: str, location: str, model: Any) -> None:
        self.name = name
        self.location = location
        self.model = model
        # sentence-transformers 6 renamed the method; older releases have only the long name.
        dimension = getattr(model, "get_embedding_dimension", None)
        dimension = dimension or model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.fingerprint = weights_fingerprint(model)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return empty(self.dim)
        # One caller at a time: the library's tokenizer is not safe to share between threads.
        with self._lock:
            vectors = self.model.encode(
                list(texts),
                batch_size=BATCH_SIZE,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def build(source: TextSource, options: TextTowerOptions) -> LibraryTower:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelError(
            f"text model {source.name!r} needs sentence-transformers: "
            "pip install 'lookalike[train]'"
        ) from exc
    try:
        model = SentenceTransformer(source.location, device=_device(options.device))
    except Exception as exc:  # OSError, ValueError, hub errors: all mean "cannot load"
        raise ModelError(
            f"cannot load text model {source.name!r} from {source.location}: {exc}"
        ) from exc
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LibraryTower(source.name, source.location, model)


def weights_fingerprint(model: Any) -> str:
    """SHA-256 over parameter names, shapes and bytes: the same weights give the same id."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()[:16]


def _device(device: str) -> str:
    from lookalike.encode.torch_runtime import resolve_device

    return resolve_device(device)
