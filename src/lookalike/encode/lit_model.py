"""The trainable torch module of a LiT model, and its safetensors save/load.

Only image encoding and training need it: text queries run the frozen text tower and the
projection in numpy (`encode/lit.py`), so they never import torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from lookalike.encode.lit import METADATA_KEY, WEIGHTS_FILE, LitConfig, read_config
from lookalike.encode.sources import LIT_CONFIG
from lookalike.errors import ModelError


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


def random_model(config: LitConfig, seed: int, device: str = "cpu") -> LitModel:
    """The untrained model of the same architecture: the baseline training must beat."""
    torch.manual_seed(seed)
    return LitModel(config).to(device).eval()
