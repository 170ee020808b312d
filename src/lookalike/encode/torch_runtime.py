"""Shared torch plumbing for encoders: device choice and batched inference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when a GPU is usable, else "cpu"."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def batched_inference(
    forward: Callable, inputs: np.ndarray, batch_size: int, device: str
) -> np.ndarray:
    """Run `forward` over `inputs` in batches without autograd; float32 numpy out."""
    import torch

    outputs = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start : start + batch_size]))
            outputs.append(forward(batch.to(device)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)
