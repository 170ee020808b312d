"""One parser for model sources: hub tag, hf-hub repo, local checkpoint file or directory."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from lookalike.errors import ConfigError

SourceKind = Literal["hub", "hf-hub", "openclip-file", "openclip-dir", "lit-dir", "onnx-dir"]

OPENCLIP_CONFIG = "open_clip_config.json"
LIT_CONFIG = "lookalike_model.json"
ONNX_CONFIG = "lookalike_onnx.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")
# The folder inside a model folder where its ONNX Runtime exports are cached
# (`encode/ort_cache.py`): derived from the weights, so not part of the model's identity.
EXPORTS_FOLDER = ".lookalike-onnx"


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    location: str  # hub model name, hf-hub repo id, or local path
    model_name: str  # open_clip architecture (for hub tags and bare checkpoint files)
    pretrained: str | None = None

    @property
    def is_local(self) -> bool:
        return self.kind not in ("hub", "hf-hub")

    @property
    def display_name(self) -> str:
        if self.kind == "hub":
            return f"{self.model_name}/{self.pretrained}"
        if self.kind == "hf-hub":
            return f"hf-hub:{self.location}"
        return self.location

    def fingerprint(self) -> str:
        """A stable id of architecture + weights: stored embeddings carry it."""
        if not self.is_local:
            return f"{self.kind}:{self.display_name}"
        return f"{self.kind}:{_hash_path(str(Path(self.location).resolve()))}"


def parse_model_source(
    model_name: str, pretrained: str | None, checkpoint: str | None
) -> ModelSource:
    """Settings -> ModelSource. A checkpoint, when set, wins over the hub tag."""
    if not checkpoint:
        return ModelSource("hub", model_name, model_name, pretrained)
    if checkpoint.startswith("hf-hub:"):
        return ModelSource("hf-hub", checkpoint.removeprefix("hf-hub:"), model_name)
    path = Path(checkpoint.removeprefix("local-dir:")).expanduser()
    if path.is_file():
        return ModelSource("openclip-file", str(path), model_name)
    if path.is_dir():
        for marker, kind in (
            (LIT_CONFIG, "lit-dir"),
            (ONNX_CONFIG, "onnx-dir"),
            (OPENCLIP_CONFIG, "openclip-dir"),
        ):
            if (path / marker).is_file():
                return ModelSource(kind, str(path), _dir_model_name(path, marker, model_name))
        raise ConfigError(
            f"model checkpoint directory {path} has none of {LIT_CONFIG}, {ONNX_CONFIG}, "
            f"{OPENCLIP_CONFIG}"
        )
    raise ConfigError(f"model checkpoint {checkpoint!r} does not exist")


def _dir_model_name(path: Path, marker: str, default: str) -> str:
    try:
        config = json.loads((path / marker).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path / marker}: {exc}") from exc
    return str(config.get("model_name", default))


def _hash_path(path: str) -> str:
    target = Path(path)
    stat = target.stat()
    files = (
        [target]
        if target.is_file()
        else sorted(p for p in target.rglob("*") if p.is_file() and _counts(p))
    )
    signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(signature, stat.st_mtime_ns)


def _counts(path: Path) -> bool:
    if EXPORTS_FOLDER in path.parts:
        return False
    return path.suffix in WEIGHT_SUFFIXES or path.suffix == ".json"


@lru_cache(maxsize=16)
def _hash_files(signature: tuple[tuple[str, int, int], ...], _mtime: int) -> str:
    # Cached on (path, size, mtime) so a process hashes a large checkpoint once.
    digest = hashlib.sha256()
    for name, _size, _ in signature:
        digest.update(Path(name).name.encode())
        with open(name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
