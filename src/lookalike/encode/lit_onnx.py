"""The LiT image tower on ONNX Runtime, exported from torch once and cached.

`torch.onnx.export` writes the tower (open_clip's vision module) at the first image a
process encodes; `encode/ort_cache.py` checks it against torch on a fixed sample of
synthetic images (fp32 cosine >= 0.9999), keeps int8 only when it stays within 0.99 of
fp32, and caches it beside the model (or in the export folder when the model's folder is
read-only). Later loads read the cached file and never load the torch model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.encode.base import LoadOnce
from lookalike.encode.ort_cache import (
    CachedModel,
    cached_export,
    export_folder,
    onnxruntime_available,
    read_record,
)

if TYPE_CHECKING:
    from lookalike.encode.lit import LitConfig
    from lookalike.encode.lit_model import LitModel

SAMPLE_IMAGES = 16


class OnnxImageTower:
    """A LiT image tower's forward pass on an ONNX Runtime session."""

    def __init__(self, model: CachedModel) -> None:
        self.model = model
        self.runtime = model.runtime

    def encode_pixels(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        """(n, 3, size, size) float32 -> (n, dim) float32, not normalised."""
        outputs = [
            self.model.session.run(
                None, {"pixels": np.ascontiguousarray(pixels[start : start + batch_size])}
            )[0]
            for start in range(0, len(pixels), batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32, copy=False)


def sample_pixels(config: LitConfig) -> np.ndarray:
    """A fixed sample of smooth synthetic images (noise upscaled, some flat, some busy),
    through the model's own preprocessing."""
    from lookalike.encode.lit import preprocess_image

    rng = np.random.default_rng(0)
    images = []
    for index in range(SAMPLE_IMAGES):
        side = 2 + index % 8  # coarse noise -> smooth blobs; finer noise -> busier images
        cells = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        image = Image.fromarray(cells).resize((96, 64 + 8 * index), Image.Resampling.BILINEAR)
        images.append(preprocess_image(image, config.image_size, config.mean, config.std))
    return np.stack(images)


def export_image_tower(
    directory: Path,
    config: LitConfig,
    model_id: str,
    load_model: Callable[[], LitModel],
    *,
    export_dir: Path,
    threads: int,
) -> OnnxImageTower:
    """The image tower of the LiT model in `directory` on ONNX Runtime; `load_model()`
    (torch) is called only when there is no valid cached export."""
    import torch

    from lookalike.encode.onnx_export import export_module

    pixels = sample_pixels(config)
    model = LoadOnce(lambda: load_model().to("cpu").eval())

    def write(path: Path) -> None:
        export_module(model.get().visual, torch.from_numpy(pixels[:2]), "pixels", path)

    def reference() -> np.ndarray:
        with torch.inference_mode():
            return model.get().encode_image(torch.from_numpy(pixels)).float().numpy()

    cached = cached_export(
        export_folder(directory, export_dir),
        _stem(model_id),
        write_fp32=write,
        embed=lambda session: session.run(None, {"pixels": pixels})[0],
        reference=reference,
        threads=threads,
    )
    return OnnxImageTower(cached)


def planned_image_runtime(
    directory: Path | None, model_id: str, runtime: str, export_dir: Path | None, device: str
) -> str:
    """What will run the image tower: "onnxruntime-int8"/"-fp32" when a finished export
    says so, "onnxruntime" when one will be made at first use, else "torch"."""
    if directory is None or runtime == "native" or device == "cuda":
        return "torch"
    if not onnxruntime_available():
        return "torch"
    record = read_record(export_folder(directory, export_dir or directory), _stem(model_id))
    if record is None:
        return "onnxruntime"
    if runtime == "auto" and not record.get("faster_than_native", True):
        return "torch"  # the export was slower: auto keeps the native runtime
    return f"onnxruntime-{record['precision']}"


def _stem(model_id: str) -> str:
    # The model id names the weights (a hash of the model's files): a retrained model
    # never meets the export of the one before.
    return f"lit-image-{hashlib.sha256(model_id.encode()).hexdigest()[:16]}"
