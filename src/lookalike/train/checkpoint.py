"""Training state for resuming: one safetensors file, written atomically, no pickle.

Tensors (model weights, optimizer moments, the torch RNG state) are safetensors entries;
everything else (step, optimizer hyper-parameters and scalars, run config, history) is
JSON in the file's header. One file means a crash leaves either the old state or the new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lookalike.errors import CheckpointError
from lookalike.files.atomic import atomic_write

STATE_FILE = "train_state.safetensors"
STATE_KEY = "lookalike_train_state"
STATE_VERSION = 1


@dataclass
class TrainState:
    step: int
    info: dict[str, Any]  # run config and history, as saved
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # a torch optimizer state_dict
    rng: torch.Tensor


def save_state(
    directory: Path,
    *,
    step: int,
    info: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> Path:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    saved = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for param_id, entries in saved["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param_id}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    header = {
        "version": STATE_VERSION,
        "step": step,
        "info": info,
        "param_groups": saved["param_groups"],
        "optimizer_scalars": scalars,
    }
    text = json.dumps(header)
    path = directory / STATE_FILE
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={STATE_KEY: text}))
    return path


def load_state(directory: Path) -> TrainState | None:
    """The saved state, None when there is none; CheckpointError when it is unusable."""
    from safetensors import SafetensorError, safe_open

    path = directory / STATE_FILE
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {})[STATE_KEY])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read training state {path}: {exc}") from exc
    if header.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: state version {header.get('version')!r} unsupported")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    for key, value in header["optimizer_scalars"].items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    return TrainState(
        step=int(header["step"]),
        info=header["info"],
        model={k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")},
        optimizer={"state": state, "param_groups": header["param_groups"]},
        rng=tensors["rng.torch"],
    )
