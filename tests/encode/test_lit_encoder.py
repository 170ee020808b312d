"""LiT models: text queries through the numpy text tower and a numpy projection, the same
vectors the sentence-transformers path gave, for a model saved the way training saves it
(its text fingerprint computed by sentence-transformers, as before the numpy tower)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.encode.lit import LitEncoder, build_config
from lookalike.encode.text import DEFAULT_TEXT_MODEL, load_text_tower
from lookalike.errors import ModelError

torch = pytest.importorskip("torch")
TEXTS = ["red dress", "a photo of a sneaker", "", "Винтажное платье", "word " * 300]


def saved_model(directory: Path, st_minilm, *, fingerprint: str | None = None) -> Path:
    """A LiT model directory as `lookalike train` writes it, text tower by the library."""
    from dataclasses import replace

    from lookalike.encode.lit_model import LitModel, save_model
    from lookalike.encode.text.library import LibraryTower

    tower = LibraryTower(DEFAULT_TEXT_MODEL, "packaged", st_minilm)
    config = build_config(tower, tower="rn-tiny", image_size=32, embed_dim=64)
    if fingerprint:
        config = replace(config, text_fingerprint=fingerprint)
    torch.manual_seed(3)
    save_model(directory, LitModel(config), config)
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, st_minilm) -> Path:
    return saved_model(tmp_path_factory.mktemp("lit") / "model", st_minilm)


def encoder_for(directory: Path) -> LitEncoder:
    settings = Settings(_env_file=None, model_checkpoint=str(directory), device="cpu")
    encoder = create_encoder(settings)
    assert isinstance(encoder, LitEncoder)
    return encoder


def test_text_vectors_match_the_sentence_transformers_path(model_dir: Path, st_minilm):
    from lookalike.encode.lit_model import load_model

    encoder = encoder_for(model_dir)
    ours = encoder.encode_texts(TEXTS)
    assert ours.shape == (len(TEXTS), 64) and ours.dtype == np.float32
    with torch.inference_mode():
        embedded = torch.from_numpy(
            st_minilm.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
        )
        expected = torch.nn.functional.normalize(
            load_model(model_dir).project_text(embedded), dim=-1
        ).numpy()
    assert (ours * expected).sum(axis=1).min() >= 0.9999


def test_images_encode_with_the_torch_tower_when_native(model_dir: Path):
    settings = Settings(
        _env_file=None, model_checkpoint=str(model_dir), device="cpu", encoder_runtime="native"
    )
    encoder = create_encoder(settings)
    vectors = encoder.encode_images([Image.new("RGB", (40, 32), (200, 30, 30))])
    assert vectors.shape == (1, 64) and np.isclose(np.linalg.norm(vectors), 1.0, atol=1e-5)
    assert encoder.runtimes()["images"] == "torch"


def test_another_text_tower_under_the_same_name_is_refused(tmp_path: Path, st_minilm):
    directory = saved_model(tmp_path / "other", st_minilm, fingerprint="0123456789abcdef")
    encoder = encoder_for(directory)
    assert encoder.info.dim == 64  # the config alone: nothing loads
    with pytest.raises(ModelError, match="is not the one"):
        encoder.encode_texts(["red dress"])


def test_random_init_shares_one_draw_between_its_halves(model_dir: Path):
    from lookalike.encode.lit_model import random_model

    config = encoder_for(model_dir).config
    baseline = LitEncoder.random_init(config, seed=5, device="cpu")
    model = random_model(config, 5)
    tower = load_text_tower(DEFAULT_TEXT_MODEL)
    with torch.inference_mode():
        projected = model.project_text(torch.from_numpy(tower.encode(TEXTS))).numpy()
    expected = projected / np.linalg.norm(projected, axis=1, keepdims=True)
    assert np.allclose(baseline.encode_texts(TEXTS), expected, atol=1e-5)


TEXT_QUERY = """
import json, sys
from lookalike.config import Settings
from lookalike.encode import create_encoder
encoder = create_encoder(Settings(_env_file=None, model_checkpoint=MODEL))
encoder.info, encoder.model_id
after_info = sorted(m for m in ("torch", "tokenizers", "safetensors.numpy") if m in sys.modules)
vectors = encoder.encode_texts(["red dress", "handbag"])
print(json.dumps({
    "after_info": after_info,
    "shape": list(vectors.shape),
    "heavy": sorted(m for m in ("torch", "sentence_transformers", "transformers", "open_clip")
                    if m in sys.modules),
}))
"""


def test_a_text_query_imports_no_torch(model_dir: Path):
    code = f"MODEL = {str(model_dir)!r}\n{TEXT_QUERY}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "LOOKALIKE_DEVICE": "auto"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"after_info": [], "shape": [2, 64], "heavy": []}
