"""Random-init open_clip models of real architectures for speed benchmarks (no downloads).

Weights do not change how fast a network runs, so a random-init ViT-B-32 measures the
default model's speed without fetching its 600 MB of weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lookalike.config import Settings
from lookalike.encode.onnx_export import export_onnx

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "support"))
from tiny_models import build_tiny_openclip


def build_random_openclip(directory: Path, name: str = "ViT-B-32", seed: int = 0) -> Path:
    """An open_clip local-dir checkpoint of architecture `name` with random weights."""
    if (directory / "open_clip_config.json").exists():
        return directory
    import open_clip
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
    cfg = model.visual.preprocess_cfg
    config = {
        "model_cfg": open_clip.get_model_config(name),
        "preprocess_cfg": {
            "size": cfg["size"][0],
            "mean": list(cfg["mean"]),
            "std": list(cfg["std"]),
        },
    }
    (directory / "open_clip_config.json").write_text(json.dumps(config))
    return directory


def model_dirs(cache: Path, which: str) -> dict[str, Path]:
    """torch / onnx-fp32 / onnx-int8 directories of `which` ("tiny" or "ViT-B-32")."""
    root = cache / which
    if which == "tiny":
        torch_dir = root / "torch"
        if not (torch_dir / "open_clip_config.json").exists():
            build_tiny_openclip(torch_dir)
    else:
        torch_dir = build_random_openclip(root / "torch", which)
    dirs = {"torch": torch_dir}
    settings = Settings(model_checkpoint=str(torch_dir), data_dir=cache / "unused")
    for label, int8 in (("onnx-fp32", False), ("onnx-int8", True)):
        out = root / label
        if not (out / "lookalike_onnx.json").exists():
            export_onnx(settings, out, int8=int8)
        dirs[label] = out
    return dirs
