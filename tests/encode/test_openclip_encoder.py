"""The open_clip encoder on a tiny random-init model of the real architecture."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from lookalike import Settings
from lookalike.encode import create_encoder, model_source
from lookalike.encode.sources import parse_model_source
from lookalike.errors import ConfigError, ModelError
from tests.support.images import pattern_images


def test_local_dir_encodes_images_and_text_into_one_normalised_space(settings: Settings):
    encoder = create_encoder(settings)
    images = encoder.encode_images(pattern_images(3))
    texts = encoder.encode_texts(["a red shoe", "a blue bag"])
    assert images.shape == (3, encoder.info.dim) and texts.shape == (2, encoder.info.dim)
    assert images.dtype == np.float32 and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert encoder.info.family == "open_clip" and encoder.info.image_size == 32


def test_batched_equals_one_by_one(settings: Settings):
    encoder = create_encoder(settings.model_copy(update={"encode_batch_size": 2}))
    images = pattern_images(5)
    together = encoder.encode_images(images)
    alone = np.concatenate([encoder.encode_images([im]) for im in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_preprocess_plus_encode_pixels_is_encode_images(settings: Settings):
    encoder = create_encoder(settings)
    images = pattern_images(2)
    pixels = np.stack([encoder.preprocess(im) for im in images])
    assert pixels.shape == (2, 3, 32, 32) and pixels.dtype == np.float32
    np.testing.assert_allclose(
        encoder.encode_pixels(pixels), encoder.encode_images(images), atol=1e-6
    )


def test_checkpoint_file_with_model_name(tmp_path: Path, tiny_model_dir: Path, settings: Settings):
    """A bare weights file loads for a built-in architecture name given beside it."""
    import json

    import open_clip

    config = json.loads((tiny_model_dir / "open_clip_config.json").read_text())
    open_clip.add_model_config(_write_config(tmp_path, "Tiny-Test", config["model_cfg"]))
    by_file = create_encoder(
        settings.model_copy(
            update={
                "model_name": "Tiny-Test",
                "model_checkpoint": str(tiny_model_dir / "open_clip_model.safetensors"),
            }
        )
    )
    by_dir = create_encoder(settings)
    np.testing.assert_allclose(
        by_file.encode_texts(["hello"]), by_dir.encode_texts(["hello"]), atol=1e-5
    )


def _write_config(folder: Path, name: str, model_cfg: dict) -> Path:
    import json

    path = folder / f"{name}.json"
    path.write_text(json.dumps(model_cfg))
    return path


def test_model_id_tracks_weights(tmp_path: Path, tiny_model_dir: Path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    first = parse_model_source("x", None, str(copy)).fingerprint()
    assert parse_model_source("x", None, str(copy)).fingerprint() == first
    from tests.support.tiny_models import build_tiny_openclip

    build_tiny_openclip(copy, seed=1)  # new weights, same place
    assert parse_model_source("x", None, str(copy)).fingerprint() != first


def test_hub_source_is_the_default(tmp_path: Path):
    source = model_source(Settings(_env_file=None, data_dir=tmp_path))
    assert (source.kind, source.display_name) == ("hub", "ViT-B-32/laion2b_s34b_b79k")


def test_hub_without_network_is_a_model_error_with_a_hint(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = create_encoder(
        Settings(_env_file=None, data_dir=tmp_path, model_cache_dir=tmp_path / "cache")
    )
    with pytest.raises(ModelError, match="LOOKALIKE_MODEL_CHECKPOINT"):
        encoder.encode_texts(["x"])


def test_missing_or_unrecognised_checkpoint(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_model_source("ViT-B-32", None, str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has none of"):
        parse_model_source("ViT-B-32", None, str(tmp_path / "empty"))


def test_cold_model_loads_once_under_concurrency(settings: Settings):
    encoder = create_encoder(settings)
    loads = []
    original = encoder._load

    def counting_load():
        loads.append(1)
        original()

    encoder._load = counting_load
    threads = [threading.Thread(target=encoder.encode_texts, args=(["x"],)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1
