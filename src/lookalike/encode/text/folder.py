"""Reading a sentence-transformers model folder without the library.

A folder saved by sentence-transformers (the layout of the hub's `sentence-transformers/*`
models and of the packaged MiniLM) is a pipeline in `modules.json`: a transformer, a
pooling layer, optionally a normaliser. This module reads what the numpy tower needs to
reproduce that pipeline; folders with other modules (dense layers, custom code) are left
to the sentence-transformers library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.errors import ModelError

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
POOLING_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"


@dataclass(frozen=True)
class SentenceFolder:
    """A sentence-transformers folder whose transformer sits at the folder's top level."""

    path: Path
    model_config: dict[str, Any]  # the transformer's config.json
    pooling: str  # one of POOLING_MODES
    max_seq_length: int
    do_lower_case: bool

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def tokenizer(self) -> Path:
        return self.path / TOKENIZER


def read_sentence_folder(path: Path) -> SentenceFolder | None:
    """The folder's pipeline, or None when it is not a plain transformer + pooling folder."""
    modules = _json(path / "modules.json")
    if not isinstance(modules, list) or not (path / WEIGHTS).is_file():
        return None
    kinds = [m.get("type") for m in sorted(modules, key=lambda m: m.get("idx", 0))]
    if kinds not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, NORMALIZE]):
        return None
    transformer, pooling_module = sorted(modules, key=lambda m: m.get("idx", 0))[:2]
    if transformer.get("path", "") != "" or not (path / TOKENIZER).is_file():
        return None
    pooling = _pooling_mode(_json(path / pooling_module.get("path", "") / "config.json"))
    config = _json(path / "config.json")
    if pooling is None or not isinstance(config, dict):
        return None
    bert = _json(path / "sentence_bert_config.json") or {}
    tokenizer = _json(path / "tokenizer_config.json") or {}
    limits = [
        bert.get("max_seq_length"),
        tokenizer.get("model_max_length") if not bert.get("max_seq_length") else None,
        config.get("max_position_embeddings"),
    ]
    max_length = min((int(x) for x in limits if isinstance(x, int | float) and x > 0), default=512)
    return SentenceFolder(
        path=path,
        model_config=config,
        pooling=pooling,
        max_seq_length=max_length,
        do_lower_case=bool(bert.get("do_lower_case", False)),
    )


def _pooling_mode(config: Any) -> str | None:
    if not isinstance(config, dict):
        return None
    chosen = [mode for mode in POOLING_MODES if config.get(f"pooling_mode_{mode}")]
    # Newer releases write one `pooling_mode` string instead of the flags.
    named = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens"}
    if not chosen and config.get("pooling_mode") in named:
        chosen = [named[config["pooling_mode"]]]
    if len(chosen) != 1 or any(config.get(k) for k in ("pooling_mode_weightedmean_tokens",)):
        return None
    return chosen[0]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
