"""Export an open_clip model's image and text towers to ONNX (optionally int8).

The directory it writes is a model source of its own (`lookalike_onnx.json` marks it):
`image.onnx` and `text.onnx` with a dynamic batch axis, plus the preprocessing and
tokenizer settings the towers expect. The export keeps the source model's id, since its
embeddings are the same (within the tolerance the tests check), so switching between the
torch and ONNX backends needs no re-indexing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from lookalike.config import Settings
from lookalike.encode.factory import create_encoder
from lookalike.encode.ort_cache import quantize_int8
from lookalike.encode.sources import ONNX_CONFIG
from lookalike.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

IMAGE_FILE = "image.onnx"
TEXT_FILE = "text.onnx"
OPSET = 17
FORMAT_VERSION = 1


def export_onnx(settings: Settings, out_dir: Path, *, int8: bool = False) -> Path:
    """Export the configured open_clip model into `out_dir`; returns the directory."""
    import torch

    from lookalike.encode.openclip import OpenClipEncoder

    encoder = create_encoder(settings)
    if not isinstance(encoder, OpenClipEncoder):
        raise ConfigError("export-onnx exports open_clip models; the configured model is not one")
    model, preprocess_cfg, tokenizer = encoder.torch_parts()
    tokenizer_cfg = _tokenizer_config(tokenizer)
    model = model.to("cpu").eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = preprocess_cfg["size"]
    height, width = (size, size) if isinstance(size, int) else size
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        work = Path(tmp)
        pixels = torch.zeros(2, 3, height, width)
        tokens = torch.as_tensor(tokenizer(["a photo", "a red car on a mountain road"]))
        export_module(_tower(model, "encode_image"), pixels, "pixels", work / IMAGE_FILE)
        export_module(_tower(model, "encode_text"), tokens, "tokens", work / TEXT_FILE)
        if int8:
            for name in (IMAGE_FILE, TEXT_FILE):
                _quantize(work / name, work / f"int8-{name}")
                (work / f"int8-{name}").replace(work / name)
        for name in (IMAGE_FILE, TEXT_FILE):
            shutil.move(str(work / name), str(out_dir / name))
    info = encoder.info
    config = {
        "format_version": FORMAT_VERSION,
        "model_name": encoder.source.model_name,
        "exported_from": info.name,
        "model_id": info.model_id,
        "dim": info.dim,
        "image_size": info.image_size,
        "int8": int8,
        "opset": OPSET,
        "files": {"image": IMAGE_FILE, "text": TEXT_FILE},
        "preprocess": {
            k: list(v) if isinstance(v, tuple) else v for k, v in preprocess_cfg.items()
        },
        "tokenizer": tokenizer_cfg,
    }
    # The marker file goes last, atomically: a half-written export is never taken for a model.
    marker = out_dir / f".{ONNX_CONFIG}.tmp"
    marker.write_text(json.dumps(config, indent=2))
    os.replace(marker, out_dir / ONNX_CONFIG)
    return out_dir


def _tower(model: Any, method: str) -> Any:
    """One tower of `model` as a module torch.onnx can trace (the model's weights inside)."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return getattr(self.model, method)(inputs)

    return Tower().eval()


def export_module(module: Any, example: Any, input_name: str, path: Path) -> None:
    """`module(example)` as an ONNX graph at `path`, dynamic in the batch axis."""
    import torch

    # Grad mode on: without it torch swaps in fused attention kernels ONNX cannot express.
    with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():
        # The TorchScript exporter needs no extra packages (the dynamo one wants onnxscript).
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[input_name],
                output_names=["embeddings"],
                dynamic_axes={input_name: {0: "batch"}, "embeddings": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        except Exception as exc:  # torch.onnx raises many types for unsupported operators
            raise ModelError(f"cannot export {path.name} to ONNX: {exc}") from exc


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the weights (activations stay float), per tensor."""
    quantize_int8(source, target, per_channel=False)


def _tokenizer_config(tokenizer: Any) -> dict[str, Any]:
    from open_clip.tokenizer import SimpleTokenizer

    if not isinstance(tokenizer, SimpleTokenizer):
        raise ModelError(
            f"export-onnx supports models with open_clip's CLIP tokenizer, not "
            f"{type(tokenizer).__name__}"
        )
    clean = getattr(tokenizer.clean_fn, "__name__", "_clean_lower").removeprefix("_clean_")
    return {"kind": "open_clip", "context_length": tokenizer.context_length, "clean": clean}
