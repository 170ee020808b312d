"""CLIP encoder on open_clip: hub weights on first use, or a local checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from lookalike.encode.base import EncoderInfo, LazyModel, encode_images_batched, l2_normalize
from lookalike.encode.sources import ModelSource
from lookalike.encode.torch_runtime import batched_inference, resolve_device
from lookalike.errors import ModelError


class OpenClipEncoder(LazyModel):
    def __init__(
        self,
        source: ModelSource,
        *,
        device: str = "auto",
        batch_size: int = 32,
        cache_dir: str | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.threads = threads
        self._model_id = source.fingerprint()

    def _load(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        model, preprocess, tokenizer = load_open_clip(self.source, self.device, self.cache_dir)
        model.eval()
        self._model, self._preprocess, self._tokenizer = model, preprocess, tokenizer
        size = model.visual.image_size
        self._image_size = int(size[0] if isinstance(size, tuple | list) else size)
        with torch.inference_mode():
            self._dim = int(model.encode_text(tokenizer(["a"]).to(self.device)).shape[-1])

    @property
    def info(self) -> EncoderInfo:
        self.ensure_loaded()
        return EncoderInfo(
            "open_clip", self.source.display_name, self._model_id, self._dim, self._image_size
        )

    @property
    def model_id(self) -> str:
        return self._model_id

    def torch_parts(self) -> tuple[Any, dict[str, Any], Any]:
        """(model, preprocess config, tokenizer) of the loaded model, for exporting it."""
        self.ensure_loaded()
        return self._model, dict(self._model.visual.preprocess_cfg), self._tokenizer

    def preprocess(self, image: Image.Image) -> np.ndarray:
        self.ensure_loaded()
        return self._preprocess(image).numpy()

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
            return np.zeros((0, self._dim), dtype=np.float32)
        tokens = self._tokenizer(list(texts)).numpy()
        return l2_normalize(
            batched_inference(self._model.encode_text, tokens, self.batch_size, self.device)
        )


def open_clip_name(source: ModelSource) -> tuple[str, str | None]:
    """(model name, pretrained) as open_clip's factory wants them for this source."""
    name = {
        "hub": source.model_name,
        "openclip-file": source.model_name,
        "openclip-dir": f"local-dir:{source.location}",
        "hf-hub": f"hf-hub:{source.location}",
    }.get(source.kind)
    if name is None:
        raise ModelError(f"open_clip cannot load a {source.kind} source")
    pretrained = {"hub": source.pretrained, "openclip-file": source.location}.get(source.kind)
    return name, pretrained


def load_open_clip(source: ModelSource, device: str, cache_dir: str | None = None):
    """(model, eval preprocess, tokenizer); open_clip's own factory resolves hub tags,
    files and local-dir alike."""
    import open_clip

    name, pretrained = open_clip_name(source)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name,
            pretrained=pretrained,
            device=device,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # open_clip raises RuntimeError/OSError/ValueError/HF errors
        hint = (
            " (no network? point LOOKALIKE_MODEL_CHECKPOINT at a local checkpoint)"
            if not source.is_local
            else ""
        )
        raise ModelError(f"cannot load open_clip model {source.display_name}: {exc}{hint}") from exc
    return model, preprocess, tokenizer
