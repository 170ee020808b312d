"""CLIP encoder on open_clip: hub weights on first use, or a local checkpoint."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.encode.base import EncoderInfo, LazyModel, encode_images_batched, l2_normalize
from lookalike.encode.hub import OFFLINE_HINT, cache_only, hub_unreachable
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
        self.device = device  # "auto" is resolved on load: asking needs torch
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.threads = threads
        self._model_id = source.fingerprint()

    def _load(self) -> None:
        # Before torch is imported (seconds): with the hub out of reach and nothing cached,
        # the answer is known now.
        unreachable = None if self.source.is_local else hub_unreachable()
        if unreachable and not open_clip_weights_cached(self.cache_dir):
            raise ModelError(_offline_message(self.source, unreachable))
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        self.device = resolve_device(self.device)
        model, preprocess, tokenizer = load_open_clip(
            self.source, self.device, self.cache_dir, unreachable=unreachable
        )
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


def load_open_clip(
    source: ModelSource,
    device: str,
    cache_dir: str | None = None,
    *,
    unreachable: str | bool | None = True,
):
    """(model, eval preprocess, tokenizer); open_clip's own factory resolves hub tags,
    files and local-dir alike. With the hub out of reach (`unreachable`: why, None when
    it answers, True to ask now), only its local cache is tried, so a model that is not
    there fails in seconds, not after a minute of retries."""
    if unreachable is True:
        unreachable = None if source.is_local else hub_unreachable()
    import open_clip

    name, pretrained = open_clip_name(source)
    try:
        with cache_only() if unreachable else contextlib.nullcontext():
            model, _, preprocess = open_clip.create_model_and_transforms(
                name,
                pretrained=pretrained,
                device=device,
                cache_dir=str(cache_dir) if cache_dir else None,
            )
            tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # open_clip raises RuntimeError/OSError/ValueError/HF errors
        if unreachable:
            raise ModelError(_offline_message(source, unreachable)) from exc
        hint = "" if source.is_local else f" ({OFFLINE_HINT})"
        raise ModelError(f"cannot load open_clip model {source.display_name}: {exc}{hint}") from exc
    return model, preprocess, tokenizer


def open_clip_weights_cached(cache_dir: str | None) -> bool:
    """Whether any open_clip weights lie in the hub cache (or open_clip's URL cache).

    Without it no hub tag can load offline; answering needs no torch, unlike asking
    open_clip which file a tag names.
    """
    from huggingface_hub import constants

    hub = Path(cache_dir) if cache_dir else Path(constants.HF_HUB_CACHE)
    found = itertools.chain(
        hub.glob("models--*/snapshots/*/open_clip_*"),
        Path(cache_dir or Path.home() / ".cache" / "clip").glob("*.pt"),
    )
    return next(found, None) is not None


def _offline_message(source: ModelSource, why: str) -> str:
    return (
        f"cannot load open_clip model {source.display_name}: the model hub is out of reach "
        f"({why}) and the model is not in the local cache; {OFFLINE_HINT}"
    )
