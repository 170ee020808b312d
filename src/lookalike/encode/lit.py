"""Lookalike-trained models: a small open_clip image tower against a locked text tower (LiT).

A model directory holds `model.safetensors` (image tower, text projection, temperature;
the full config rides in the safetensors header, so weights and config are one atomic
file) and `lookalike_model.json` (the same config, the marker `encode/sources.py` looks
for). The text tower is a frozen sentence encoder referenced by name and checked by
fingerprint, never copied into the directory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from lookalike.encode.base import EncoderInfo, LazyModel, encode_images_batched, l2_normalize
from lookalike.encode.sentence import DEFAULT_TEXT_MODEL, TextTower, load_text_tower
from lookalike.encode.sources import LIT_CONFIG, ModelSource
from lookalike.encode.torch_runtime import batched_inference, resolve_device
from lookalike.errors import ModelError

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
METADATA_KEY = "lookalike_model"

# Image towers of the open_clip family, small enough to train on a laptop CPU. `layers` as
# a list builds open_clip's ModifiedResNet (attention-pooled ResNet), an int its ViT.
TOWERS: dict[str, dict[str, Any]] = {
    "rn-tiny": {"layers": [1, 1, 1, 1], "width": 16, "head_width": 16},
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


class LitModel(nn.Module):
    """Trainable parts of a LiT model: image tower, text projection, temperature."""

    def __init__(self, config: LitConfig) -> None:
        super().__init__()
        from open_clip.model import _build_vision_tower

        self.config = config
        self.visual = _build_vision_tower(config.embed_dim, config.vision_cfg)
        if config.text_projection == "linear":
            self.text_projection: nn.Linear | None = nn.Linear(
                config.text_dim, config.embed_dim, bias=False
            )
            if config.text_dim == config.embed_dim:
                # Start from the text tower's own geometry, so that texts never seen in
                # training keep their neighbours while the projection adapts.
                nn.init.eye_(self.text_projection.weight)
        else:
            self.text_projection = None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def project_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        if self.text_projection is None:
            return text_embeddings
        return self.text_projection(text_embeddings)


def save_model(directory: Path, model: LitModel, config: LitConfig) -> None:
    """Write weights (config in the header), then the marker JSON; each file atomically."""
    from safetensors.torch import save_file

    from lookalike.files.atomic import atomic_write

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True)
    atomic_write(
        directory / WEIGHTS_FILE,
        lambda tmp: save_file(state, tmp, metadata={METADATA_KEY: text}),
    )
    atomic_write(directory / LIT_CONFIG, lambda tmp: Path(tmp).write_text(text))


def read_config(directory: Path) -> LitConfig:
    """The config from the weights file header (the marker JSON may lag by one save)."""
    from safetensors import SafetensorError, safe_open

    path = directory / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="pt") as handle:
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


def load_model(directory: Path, device: str = "cpu") -> LitModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_config(directory)
    model = LitModel(config)
    try:
        state = load_file(str(directory / WEIGHTS_FILE), device="cpu")
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        raise ModelError(
            f"{directory / WEIGHTS_FILE}: weights do not fit the config: {exc}"
        ) from exc
    return model.to(device).eval()


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


class LitEncoder(LazyModel):
    """The Encoder of a LiT model: image tower for images, frozen tower + projection for text."""

    def __init__(
        self,
        config: LitConfig,
        load: Callable[[str], LitModel],
        *,
        name: str,
        model_id: str,
        device: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
        text_model: str | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._load_model = load
        self.name = name
        self._model_id = model_id
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.threads = threads
        self.text_model = text_model or config.text_model

    @classmethod
    def from_source(
        cls, source: ModelSource, *, text_model: str | None = None, **options: Any
    ) -> LitEncoder:
        directory = Path(source.location)
        # A non-default LOOKALIKE_TEXT_MODEL says where this machine keeps the text tower.
        override = text_model if text_model and text_model != DEFAULT_TEXT_MODEL else None
        return cls(
            read_config(directory),
            lambda device: load_model(directory, device),
            name=source.display_name,
            model_id=source.fingerprint(),
            text_model=override,
            **options,
        )

    @classmethod
    def random_init(cls, config: LitConfig, *, seed: int = 0, **options: Any) -> LitEncoder:
        """The untrained model of the same architecture: the baseline training must beat."""

        def build(device: str) -> LitModel:
            torch.manual_seed(seed)
            return LitModel(config).to(device).eval()

        name = f"random-init {config.model_name}"
        return cls(
            config, build, name=name, model_id=f"random-init:{config.model_name}:{seed}", **options
        )

    def _load(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        text = load_text_tower(self.text_model, self.device)
        if (text.fingerprint, text.dim) != (self.config.text_fingerprint, self.config.text_dim):
            raise ModelError(
                f"text tower {self.text_model!r} (fingerprint {text.fingerprint}, dim "
                f"{text.dim}) is not the one {self.name} was trained with (fingerprint "
                f"{self.config.text_fingerprint}, dim {self.config.text_dim})"
            )
        self._text = text
        self._model = self._load_model(self.device)

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
        self.ensure_loaded()
        return l2_normalize(
            batched_inference(self._model.encode_image, pixels, self.batch_size, self.device)
        )

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return encode_images_batched(self, images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.ensure_loaded()
        if not texts:
            return np.zeros((0, self.config.embed_dim), dtype=np.float32)
        embedded = self._text.encode(texts)
        return l2_normalize(
            batched_inference(self._model.project_text, embedded, 1024, self.device)
        )
