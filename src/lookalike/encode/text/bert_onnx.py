"""The BERT sentence tower on ONNX Runtime: the numpy tower's graph, several times faster.

The graph comes from the numpy tower's own weights (`bert_graph`, no torch), is exported
once per weights fingerprint and cached (`encode/ort_cache.py`: fp32 checked against
numpy, int8 kept only when it stays within cosine 0.99 of fp32 on `SAMPLE_TEXTS`).
Tokenising, batching and normalising are the numpy tower's (`encode_with`), so only the
forward pass runs elsewhere. Measured in benchmarks/text_tower.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lookalike.encode.ort_cache import (
    CachedModel,
    cached_export,
    export_folder,
    onnxruntime_available,
)
from lookalike.encode.text.base import TextTower, TextTowerOptions
from lookalike.encode.text.bert import NumpyBertTower
from lookalike.errors import ModelError

log = logging.getLogger(__name__)

# The fixed sample the int8 decision is measured on: short and long queries, product
# copy, other scripts, odd input; every row must stay within the threshold.
SAMPLE_TEXTS = (
    "red dress",
    "a photo of a sneaker",
    "running shoes for women, size 39",
    "handbag",
    "winter jacket with a fur-lined hood",
    "black leather ankle boots with a low heel",
    "t-shirt",
    "trouser",
    "Pullover aus Wolle, dunkelblau",
    "chaussures de course légères",
    "vestido rojo de verano",
    "Винтажное красное платье",
    "红色连衣裙",
    "🙂👗👠",
    "",
    "12345",
    "https://shop.example/products/red-dress?id=7",
    "This relaxed-fit midi dress is cut from a breathable cotton-linen blend, with a square "
    "neckline, puffed short sleeves, a smocked back panel and side seam pockets.",
    "sneaker " * 60,
    "a bag",
    "wool scarf",
    "sandals",
    "denim shirt with pearl snaps",
    "kids' rain boots",
)


class OnnxBertTower:
    """TextTower for BERT sentence folders whose forward pass runs on ONNX Runtime."""

    def __init__(self, native: NumpyBertTower, model: CachedModel) -> None:
        self.native = native
        self.name = native.name
        self.location = native.location
        self.dim = native.dim
        self.model = model
        self.runtime = model.runtime
        # No lock: onnxruntime's run() may be called from many threads at once, and the
        # numpy tower's tokenizer too (its settings are fixed at load).
        self._session = model.session

    @property
    def fingerprint(self) -> str:
        return self.native.fingerprint

    def fingerprint_aliases(self) -> tuple[str, ...]:
        return self.native.fingerprint_aliases()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.native.encode_with(texts, self._forward)

    def _forward(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return run_session(self._session, tokens, mask)


def run_session(session: object, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    (pooled,) = session.run(None, {"input_ids": tokens, "attention_mask": mask})  # type: ignore[attr-defined]
    return np.asarray(pooled, dtype=np.float32)


def export_bert(native: NumpyBertTower, folder: Path, threads: int) -> CachedModel:
    """The tower's ONNX form from `folder`, exported there first when missing."""
    import onnx

    from lookalike.encode.text.bert_graph import build_bert_graph

    def write(path: Path) -> None:
        onnx.save_model(build_bert_graph(native), str(path))

    return cached_export(
        folder,
        f"bert-{native.fingerprint}",
        write_fp32=write,
        embed=lambda session: native.encode_with(
            SAMPLE_TEXTS, lambda t, m: run_session(session, t, m)
        ),
        reference=lambda: native.encode(SAMPLE_TEXTS),
        threads=threads,
    )


def with_runtime(native: NumpyBertTower, options: TextTowerOptions) -> TextTower:
    """The tower to serve for `options.runtime`: the ONNX Runtime one for "onnx" (or an
    error), for "auto" when onnxruntime is installed and the export checks out (else the
    numpy tower, with the reason logged); the numpy tower for "native"."""
    if options.runtime == "native":
        return native
    if not onnxruntime_available():
        if options.runtime == "onnx":
            raise ModelError("encoder runtime 'onnx' needs: pip install 'lookalike[onnx]'")
        log.warning("text tower %s runs in numpy: onnxruntime is not installed", native.name)
        return native
    try:
        folder = bert_export_folder(native.folder.path, options.export_dir)
        model = export_bert(native, folder, options.threads or 1)
    except (ModelError, OSError) as exc:
        if options.runtime == "onnx":
            raise ModelError(f"cannot run {native.name} on ONNX Runtime: {exc}") from exc
        log.warning("text tower %s runs in numpy: %s", native.name, exc)
        return native
    if options.runtime == "auto" and not model.faster_than_native:
        log.warning("text tower %s runs in numpy: %s", native.name, model.slower_reason())
        return native
    return OnnxBertTower(native, model)


def bert_export_folder(model_folder: Path, export_dir: str | None) -> Path:
    """Where a BERT folder's exports live (beside it, or in the settings' export folder)."""
    if export_dir is None:
        folder = export_folder(model_folder, model_folder)
        if folder == model_folder:  # not writable beside the model, and nowhere else given
            raise ModelError(f"no folder to cache the ONNX export of {model_folder} in")
        return folder
    return export_folder(model_folder, Path(export_dir))
