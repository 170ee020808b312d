"""Small random-init models of the real architectures, built in-process (no network)."""

from __future__ import annotations

import json
from pathlib import Path

TINY_OPENCLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def build_tiny_openclip(directory: Path, seed: int = 0) -> Path:
    """An open_clip local-dir checkpoint (open_clip_config.json + safetensors weights)."""
    import torch
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = CLIP(**TINY_OPENCLIP_CFG)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
    config = {
        "model_cfg": TINY_OPENCLIP_CFG,
        "preprocess_cfg": {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    }
    (directory / "open_clip_config.json").write_text(json.dumps(config))
    return directory
