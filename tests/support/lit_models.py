"""A tiny Lookalike-trained (LiT) model directory on the packaged MiniLM text tower, saved
the way `lookalike train` saves it (random image tower: tests need its shape, not skill)."""

from __future__ import annotations

from pathlib import Path


def write_lit_model(directory: Path, seed: int = 3) -> Path:
    import torch

    from lookalike.encode.lit import build_config
    from lookalike.encode.lit_model import LitModel, save_model
    from lookalike.encode.text import DEFAULT_TEXT_MODEL, load_text_tower

    config = build_config(load_text_tower(DEFAULT_TEXT_MODEL), image_size=32, embed_dim=64)
    torch.manual_seed(seed)
    save_model(directory, LitModel(config), config)
    return directory
