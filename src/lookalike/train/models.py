"""What the training loop trains: a LiT model from scratch, or a pretrained open_clip model.

Both expose the same small surface (preprocess, image/text features, temperature, save)
so one loop, one loss and one checkpoint format serve both modes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lookalike.encode.lit import LitConfig, build_config, preprocess_image
from lookalike.encode.lit_model import LitModel, save_model
from lookalike.encode.sources import OPENCLIP_CONFIG, ModelSource
from lookalike.encode.text import TextTower, load_text_tower, same_weights
from lookalike.errors import CheckpointError, ModelError
from lookalike.files.atomic import atomic_write

OPENCLIP_WEIGHTS = "open_clip_model.safetensors"

# The last caption table embedded, keyed by text tower and texts: a resumed or repeated run
# in the same process reuses it instead of running the text tower over every caption again.
_caption_memo: dict[tuple[str, str], torch.Tensor] = {}


class Trainable(Protocol):
    kind: str
    module: torch.nn.Module

    def describe(self) -> str: ...

    def architecture(self) -> dict[str, Any]:
        """What must match for a saved training state to resume on this model."""
        ...

    def preprocess(self, image: Image.Image) -> np.ndarray: ...

    def prepare_captions(self, texts: Sequence[str]) -> None:
        """Called once with every caption; ids in `text_features` index this list."""
        ...

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def text_features(self, caption_ids: torch.Tensor) -> torch.Tensor: ...

    def texts_features(self, texts: Sequence[str]) -> torch.Tensor: ...

    @property
    def logit_scale(self) -> torch.Tensor: ...

    def save(self, directory: Path, training: dict[str, Any]) -> None:
        """Write a model directory that LOOKALIKE_MODEL_CHECKPOINT can load."""
        ...


class LitTrainable:
    """Train a small open_clip image tower and a text projection against a frozen text tower."""

    kind = "lit"

    def __init__(self, config: LitConfig, text: TextTower, device: str, seed: int) -> None:
        if text.dim != config.text_dim or not same_weights(text, config.text_fingerprint):
            raise CheckpointError(
                f"text tower {text.name!r} (fingerprint {text.fingerprint}) is not the one "
                f"this run started with ({config.text_fingerprint})"
            )
        torch.manual_seed(seed)
        self.config = config
        self.text = text
        self.device = device
        self.module = LitModel(config).to(device)
        self._table: torch.Tensor | None = None

    @classmethod
    def create(
        cls,
        text_model: str,
        device: str,
        seed: int,
        *,
        tower: str = "rn-tiny",
        image_size: int = 32,
        embed_dim: int | None = None,
        text_projection: Literal["linear", "identity"] = "linear",
        threads: int | None = None,
    ) -> LitTrainable:
        # The loader serving uses: captions here and queries there get the same vectors.
        text = load_text_tower(text_model, device=device, threads=threads)
        config = build_config(
            text,
            tower=tower,
            image_size=image_size,
            embed_dim=embed_dim,
            text_projection=text_projection,
        )
        return cls(config, text, device, seed)

    def describe(self) -> str:
        params = sum(p.numel() for p in self.module.visual.parameters())
        return (
            f"LiT: open_clip {self.config.tower} image tower ({self.config.image_size}px, "
            f"{params / 1e6:.2f}M parameters) + frozen {self.text.name}"
        )

    def architecture(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "training": {}}

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return preprocess_image(image, self.config.image_size, self.config.mean, self.config.std)

    def prepare_captions(self, texts: Sequence[str]) -> None:
        # The text tower is frozen: every caption is embedded once, not once per step.
        digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()
        key = (self.text.fingerprint, digest)
        if key not in _caption_memo:
            _caption_memo.clear()
            _caption_memo[key] = torch.from_numpy(_embed_captions(self.text, texts))
        self._table = _caption_memo[key].to(self.device)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.module.encode_image(pixels), dim=-1)

    def text_features(self, caption_ids: torch.Tensor) -> torch.Tensor:
        if self._table is None:
            raise ModelError("prepare_captions must run before training")
        return F.normalize(self.module.project_text(self._table[caption_ids]), dim=-1)

    def texts_features(self, texts: Sequence[str]) -> torch.Tensor:
        embedded = torch.from_numpy(self.text.encode(texts)).to(self.device)
        return F.normalize(self.module.project_text(embedded), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.module.logit_scale

    def save(self, directory: Path, training: dict[str, Any]) -> None:
        save_model(directory, self.module, replace(self.config, training=training))


class OpenClipTrainable:
    """Fine-tune both towers of an open_clip model; saves an open_clip local directory."""

    kind = "finetune"

    def __init__(self, source: ModelSource, device: str, cache_dir: str | None = None) -> None:
        from lookalike.encode.openclip import load_open_clip

        self.source = source
        self.device = device
        model, preprocess, tokenizer = load_open_clip(source, device, cache_dir)
        self.module = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self.model_cfg, self.preprocess_cfg = _open_clip_configs(source, model)
        self._tokens: torch.Tensor | None = None

    def describe(self) -> str:
        params = sum(p.numel() for p in self.module.parameters())
        return f"fine-tune open_clip {self.source.display_name} ({params / 1e6:.1f}M parameters)"

    def architecture(self) -> dict[str, Any]:
        return {"model_cfg": self.model_cfg, "base": self.source.display_name}

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self._preprocess(image).numpy()

    def prepare_captions(self, texts: Sequence[str]) -> None:
        self._tokens = self._tokenizer(list(texts)).to(self.device)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.module.encode_image(pixels), dim=-1)

    def text_features(self, caption_ids: torch.Tensor) -> torch.Tensor:
        if self._tokens is None:
            raise ModelError("prepare_captions must run before training")
        return F.normalize(self.module.encode_text(self._tokens[caption_ids]), dim=-1)

    def texts_features(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self._tokenizer(list(texts)).to(self.device)
        return F.normalize(self.module.encode_text(tokens), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.module.logit_scale

    def save(self, directory: Path, training: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        atomic_write(directory / OPENCLIP_WEIGHTS, lambda tmp: save_file(state, tmp))
        config = {
            "model_cfg": self.model_cfg,
            "preprocess_cfg": self.preprocess_cfg,
            "lookalike_training": training,
        }
        text = json.dumps(config, indent=2, default=_jsonable)
        atomic_write(directory / OPENCLIP_CONFIG, lambda tmp: Path(tmp).write_text(text))


def _embed_captions(text: TextTower, texts: Sequence[str], chunk: int = 256) -> np.ndarray:
    """Every caption through the frozen tower, in chunks under a progress bar (a larger
    tower takes a minute over a catalog's captions on a small machine)."""
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=len(texts), desc="embed captions", unit="text", leave=False) as bar:
        for start in range(0, len(texts), chunk):
            parts.append(text.encode(texts[start : start + chunk]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else text.encode([])


def _open_clip_configs(source: ModelSource, model) -> tuple[dict, dict]:
    """The model and preprocess configs an open_clip local directory needs."""
    import open_clip
    from open_clip.model import get_model_preprocess_cfg

    from lookalike.encode.openclip import open_clip_name

    name, pretrained = open_clip_name(source)
    try:
        model_cfg = open_clip.get_model_config(name)
    except Exception as exc:  # a hub config that cannot be fetched, an unreadable file
        raise ModelError(
            f"cannot read the open_clip config of {source.display_name}: {exc}"
        ) from exc
    if model_cfg is None:
        raise ModelError(f"open_clip has no config for {name!r}")
    model_cfg = dict(model_cfg)
    if source.kind == "hub" and pretrained:
        tag = open_clip.get_pretrained_cfg(name, pretrained) or {}
        if tag.get("quick_gelu"):
            model_cfg["quick_gelu"] = True
    preprocess_cfg = json.loads(json.dumps(get_model_preprocess_cfg(model), default=_jsonable))
    return model_cfg, preprocess_cfg


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return str(value)
