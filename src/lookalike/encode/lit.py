"""Lookalike-trained models: a small open_clip image tower against a locked text tower (LiT).

A model directory holds `model.safetensors` (image tower, text projection, temperature;
the full config rides in the safetensors header, so weights and config are one atomic
file) and `lookalike_model.json` (the same config, the marker `encode/sources.py` looks
for). The text tower is a frozen sentence encoder referenced by name and checked by
fingerprint, never copied into the directory.

A text query needs no torch: the text tower comes from `encode/text`, the projection is
read from the safetensors with numpy. The image tower (torch, `encode/lit_model.py`)
loads when the first image is encoded. With `runtime` "auto" or "onnx" both towers run on
ONNX Runtime where their checked export allows (`encode/text/bert_onnx.py`,
`encode/lit_onnx.py`); "native" keeps numpy and torch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from lookalike.encode.base import EncoderInfo, LoadOnce, encode_images_batched, l2_normalize
from lookalike.encode.lit_onnx import OnnxImageTower, planned_image_runtime
from lookalike.encode.sources import ModelSource
from lookalike.encode.text import DEFAULT_TEXT_MODEL, TextTower, load_text_tower, same_weights
from lookalike.encode.text.runtime import planned_runtime
from lookalike.errors import ModelError

if TYPE_CHECKING:
    from lookalike.encode.lit_model import LitModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
METADATA_KEY = "lookalike_model"
PROJECTION_KEY = "text_projection.weight"

# Image towers of the open_clip family, small enough to train on a laptop CPU. `layers` as
# a list builds open_clip's ModifiedResNet (attention-pooled ResNet), an int its ViT.
TOWERS: dict[str, dict[str, Any]] = {
    "rn-tiny": {"layers": [1, 1, 1, 1], "width": 16, "head_width": 16},
    "rn-tiny-wide": {"layers": [1, 1, 1, 1], "width": 32, "head_width": 32},
    "rn-small": {"layers": [1, 1, 2, 1], "width": 32, "head_width": 32},
    "vit-tiny": {"layers": 3, "width": 96, "head_width": 32, "patch_size": 4},
}


@dataclass(frozen=True)
class LitConfig:
    """Everything needed to rebuild a LiT model, except the weights."""

    tower: str
    vision_cfg: dict[str, Any]
    embed_dim: int
    image_size: int
    text_model: str
    text_fingerprint: str
    text_dim: int
    text_projection: Literal["linear", "identity"] = "linear"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    model_name: str = "lit"
    format_version: int = FORMAT_VERSION
    training: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, where: str = "config") -> LitConfig:
        if not isinstance(raw, dict):
            raise ModelError(f"{where}: a LiT config must be a JSON object")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{where}: LiT format {raw.get('format_version')!r} is not {FORMAT_VERSION}"
            )
        try:
            config = cls(
                **{
                    **raw,
                    "mean": tuple(raw.get("mean", cls.mean)),
                    "std": tuple(raw.get("std", cls.std)),
                }
            )
        except TypeError as exc:
            raise ModelError(f"{where}: not a LiT config: {exc}") from exc
        if config.text_projection == "identity" and config.embed_dim != config.text_dim:
            raise ModelError(f"{where}: identity projection needs embed_dim == text_dim")
        return config


def build_config(
    text: TextTower,
    *,
    tower: str = "rn-tiny",
    image_size: int = 32,
    embed_dim: int | None = None,
    text_projection: Literal["linear", "identity"] = "linear",
) -> LitConfig:
    """A config for a new model on the given (loaded) text tower."""
    if tower not in TOWERS:
        raise ModelError(f"unknown image tower {tower!r}; known: {sorted(TOWERS)}")
    vision_cfg = {**TOWERS[tower], "image_size": image_size}
    multiple = 32 if isinstance(vision_cfg["layers"], list) else vision_cfg["patch_size"]
    if image_size < multiple or image_size % multiple:
        raise ModelError(f"tower {tower} needs an image size that is a multiple of {multiple}")
    dim = embed_dim or text.dim
    return LitConfig(
        tower=tower,
        vision_cfg=vision_cfg,
        embed_dim=dim,
        image_size=image_size,
        text_model=text.name,
        text_fingerprint=text.fingerprint,
        text_dim=text.dim,
        text_projection=text_projection,
        model_name=f"lit-{tower}-{image_size}px",
    )


def read_config(directory: Path) -> LitConfig:
    """The config from the weights file header (the marker JSON may lag by one save)."""
    from safetensors import SafetensorError, safe_open

    path = directory / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # missing, truncated
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if raw is None:
        raise ModelError(f"{path} carries no Lookalike model config")
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: unreadable model config: {exc}") from exc
    return LitConfig.from_dict(parsed, where=str(path))


def preprocess_image(
    image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """RGB image -> (3, size, size) float32: shorter side to `size`, centre crop, normalise."""
    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    resized = (max(size, round(width * scale)), max(size, round(height * scale)))
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.BICUBIC)
    left = (image.width - size) // 2
    top = (image.height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def read_projection(directory: Path, config: LitConfig) -> np.ndarray | None:
    """The text projection as (text_dim, embed_dim) float32, read without torch; None for an
    identity projection."""
    from safetensors import SafetensorError, safe_open

    if config.text_projection == "identity":
        return None
    path = directory / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="numpy") as handle:
            weight = handle.get_tensor(PROJECTION_KEY)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"cannot read the text projection from {path}: {exc}") from exc
    return _projection_matrix(weight, config, str(path))


def _projection_matrix(weight: np.ndarray, config: LitConfig, where: str) -> np.ndarray:
    # Stored as torch's Linear keeps it, (out, in); texts multiply by its transpose.
    if weight.shape != (config.embed_dim, config.text_dim):
        raise ModelError(f"{where}: text projection {weight.shape} does not fit the config")
    return np.ascontiguousarray(weight.T, dtype=np.float32)


class LitEncoder:
    """The Encoder of a LiT model: image tower for images, frozen tower + projection for text.

    The two halves load independently, each once and under its own lock: a text query
    loads the text tower and the projection (numpy), an image the torch image tower.
    """

    def __init__(
        self,
        config: LitConfig,
        image_model: Callable[[str], LitModel],
        projection: Callable[[], np.ndarray | None],
        *,
        name: str,
        model_id: str,
        device: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
        text_model: str | None = None,
        runtime: str = "native",
        export_dir: str | None = None,
        directory: Path | None = None,
    ) -> None:
        self.config = config
        self._image_model = image_model
        self._projection = projection
        self.name = name
        self._model_id = model_id
        self.device = device  # "auto" is resolved when the image tower loads (it needs torch)
        self.batch_size = batch_size
        self.threads = threads
        self.text_model = text_model or config.text_model
        self.runtime = runtime  # what runs the towers: see Settings.encoder_runtime
        self.export_dir = export_dir
        self.directory = directory  # where the weights are (None: not on disk, e.g. random)
        self._text = LoadOnce(self._load_text)
        self._image = LoadOnce(self._load_image)

    @classmethod
    def from_source(
        cls, source: ModelSource, *, text_model: str | None = None, **options: Any
    ) -> LitEncoder:
        directory = Path(source.location)
        config = read_config(directory)
        # A non-default LOOKALIKE_TEXT_MODEL says where this machine keeps the text tower.
        override = text_model if text_model and text_model != DEFAULT_TEXT_MODEL else None

        def image_model(device: str) -> LitModel:
            from lookalike.encode.lit_model import load_model

            return load_model(directory, device)

        return cls(
            config,
            image_model,
            lambda: read_projection(directory, config),
            name=source.display_name,
            model_id=source.fingerprint(),
            text_model=override,
            directory=directory,
            **options,
        )

    @classmethod
    def random_init(cls, config: LitConfig, *, seed: int = 0, **options: Any) -> LitEncoder:
        """The untrained model of the same architecture: the baseline training must beat."""

        def build() -> LitModel:
            from lookalike.encode.lit_model import random_model

            return random_model(config, seed)

        model = LoadOnce(build)  # one random draw serves both halves

        def projection() -> np.ndarray | None:
            layer = model.get().text_projection
            if layer is None:
                return None
            weight = layer.weight.detach().cpu().numpy()
            return _projection_matrix(weight, config, "random-init")

        return cls(
            config,
            lambda device: model.get().to(device),
            projection,
            name=f"random-init {config.model_name}",
            model_id=f"random-init:{config.model_name}:{seed}",
            **options,
        )

    def _load_text(self) -> tuple[TextTower, np.ndarray | None]:
        text = load_text_tower(
            self.text_model,
            device=self.device,
            threads=self.threads,
            runtime=self.runtime,
            export_dir=self.export_dir,
        )
        if text.dim != self.config.text_dim or not same_weights(text, self.config.text_fingerprint):
            raise ModelError(
                f"text tower {self.text_model!r} (fingerprint {text.fingerprint}, dim "
                f"{text.dim}) is not the one {self.name} was trained with (fingerprint "
                f"{self.config.text_fingerprint}, dim {self.config.text_dim})"
            )
        return text, self._projection()

    def _load_image(self) -> tuple[LitModel | OnnxImageTower, str]:
        import torch

        from lookalike.encode.torch_runtime import resolve_device

        device = resolve_device(self.device)
        if self.runtime != "native":
            onnx = self._onnx_image_tower(device)
            if onnx is not None:
                return onnx, device
        if self.threads:
            torch.set_num_threads(self.threads)
        return self._image_model(device), device

    def _onnx_image_tower(self, device: str) -> OnnxImageTower | None:
        """The image tower on ONNX Runtime, or None (reason logged) where "auto" keeps torch."""
        from lookalike.encode.lit_onnx import export_image_tower  # imports torch
        from lookalike.encode.ort_cache import onnxruntime_available

        reason = None
        if device != "cpu":
            reason = f"the device is {device} (ONNX Runtime serves CPU here)"
        elif self.directory is None:
            reason = "the model is not saved in a folder"
        elif not onnxruntime_available():
            reason = "onnxruntime is not installed: pip install 'lookalike[onnx]'"
        else:
            try:
                tower = export_image_tower(
                    self.directory,
                    self.config,
                    self._model_id,
                    lambda: self._image_model("cpu"),
                    export_dir=Path(self.export_dir) if self.export_dir else self.directory,
                    # Ingest batches images through it: all cores unless told (as torch).
                    threads=self.threads or os.cpu_count() or 1,
                )
            except (ModelError, OSError) as exc:
                reason = str(exc)
            else:
                if self.runtime == "onnx" or tower.model.faster_than_native:
                    return tower
                reason = tower.model.slower_reason()
        if self.runtime == "onnx":  # only failures reach here: "onnx" serves a slower export
            raise ModelError(f"cannot run the image tower of {self.name} on ONNX Runtime: {reason}")
        log.warning("the image tower of %s runs on torch: %s", self.name, reason)
        return None

    def warm_up(self) -> None:
        """Load both towers now (a server at start-up), each on its runtime; the text
        tower first, so that an image tower that cannot load leaves it loaded."""
        self._text.get()
        self._image.get()

    def runtimes(self) -> dict[str, str]:
        """What answers texts and images: what runs a loaded half, what will run the other."""
        if self._text.loaded:
            text = getattr(self._text.get()[0], "runtime", "unknown")
        else:
            text = planned_runtime(
                self.text_model, self.config.text_fingerprint, self.runtime, self.export_dir
            )
        if self._image.loaded:
            images = getattr(self._image.get()[0], "runtime", "torch")
        else:
            images = planned_image_runtime(
                self.directory,
                self._model_id,
                self.runtime,
                Path(self.export_dir) if self.export_dir else None,
                self.device,
            )
        return {"text": text, "images": images}

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo(
            "lit", self.name, self._model_id, self.config.embed_dim, self.config.image_size
        )

    @property
    def model_id(self) -> str:
        return self._model_id

    def preprocess(self, image: Image.Image) -> np.ndarray:
        cfg = self.config
        return preprocess_image(image, cfg.image_size, cfg.mean, cfg.std)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        from lookalike.encode.torch_runtime import batched_inference

        model, device = self._image.get()
        if isinstance(model, OnnxImageTower):
            return l2_normalize(model.encode_pixels(pixels, self.batch_size))
        return l2_normalize(batched_inference(model.encode_image, pixels, self.batch_size, device))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return encode_images_batched(self, images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.config.embed_dim), dtype=np.float32)
        tower, projection = self._text.get()
        embedded = tower.encode(texts)
        if projection is not None:
            embedded = embedded @ projection
        return l2_normalize(embedded)
