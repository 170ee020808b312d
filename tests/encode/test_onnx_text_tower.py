"""The BERT text tower on ONNX Runtime against the numpy tower it was built from: the same
vectors, one export reused, the int8 decision as measured, damaged caches re-exported."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from lookalike.encode.ort_cache import INT8_MIN_COSINE, read_record
from lookalike.encode.text import DEFAULT_TEXT_MODEL, TextTowerOptions, load_text_tower
from lookalike.encode.text.bert import NumpyBertTower, build
from lookalike.encode.text.bert_onnx import OnnxBertTower, export_bert, with_runtime
from lookalike.encode.text.registry import parse_text_source
from lookalike.errors import ModelError
from tests.encode.conftest import write_tiny_bert_folder
from tests.encode.test_text_towers import TEXTS, cosines

pytest.importorskip("onnxruntime", reason="the onnx extra is needed")
FP32_MIN_COSINE = 0.9999


def numpy_tower(name: str) -> NumpyBertTower:
    tower = build(parse_text_source(name), TextTowerOptions())
    assert isinstance(tower, NumpyBertTower)
    return tower


def int8_decision(record: dict) -> str:
    """The precision the rule picks from what the export measured."""
    times = record["sample_ms"]
    close = record["int8_vs_fp32_min_cosine"] >= INT8_MIN_COSINE
    return "int8" if close and times["int8"] < times["fp32"] else "fp32"


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


def test_minilm_on_onnx_runtime_gives_the_numpy_vectors(minilm_folder: Path, minilm_export):
    tower = load_text_tower(DEFAULT_TEXT_MODEL, runtime="onnx", export_dir=str(minilm_export))
    assert isinstance(tower, OnnxBertTower)
    native = load_text_tower(DEFAULT_TEXT_MODEL)
    assert isinstance(native, NumpyBertTower)
    assert tower.fingerprint == native.fingerprint and tower.dim == native.dim == 384
    vectors = tower.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = native.encode(TEXTS)
    if tower.model.precision == "fp32":
        assert cosines(vectors, expected).min() >= FP32_MIN_COSINE
    else:
        assert cosines(vectors, expected).min() >= INT8_MIN_COSINE
    # An installed package's folder is pip's: the export went to the export folder.
    assert tower.model.path.parent == minilm_export
    assert not (minilm_folder / ".lookalike-onnx").exists()


def test_the_int8_decision_follows_the_measured_cosine(minilm_export):
    tower = load_text_tower(DEFAULT_TEXT_MODEL, runtime="onnx", export_dir=str(minilm_export))
    record = read_record(minilm_export, f"bert-{tower.fingerprint}")
    assert record is not None and record["fp32_vs_native_min_cosine"] >= FP32_MIN_COSINE
    measured = record["int8_vs_fp32_min_cosine"]
    assert isinstance(measured, float) and 0 < measured <= 1.0
    assert record["precision"] == int8_decision(record)
    assert tower.runtime == f"onnxruntime-{record['precision']}"
    assert (minilm_export / record["file"]).is_file()
    # The int8 file of a rejected quantisation is not left behind.
    assert record["precision"] == "int8" or not list(minilm_export.glob("*-int8.onnx"))


@pytest.mark.parametrize(
    "pooling", ["mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens"]
)
def test_each_pooling_mode_agrees_with_numpy(tmp_path: Path, minilm_folder: Path, pooling):
    folder = write_tiny_bert_folder(tmp_path / pooling, minilm_folder, pooling=pooling)
    native = numpy_tower(str(folder))
    model = export_bert(native, tmp_path / "exports", threads=1)
    session_vectors = native.encode_with(
        TEXTS,
        lambda t, m: np.asarray(model.session.run(None, {"input_ids": t, "attention_mask": m})[0]),
    )
    limit = FP32_MIN_COSINE if model.precision == "fp32" else INT8_MIN_COSINE
    assert cosines(session_vectors, native.encode(TEXTS)).min() >= limit
    # The tiny random model quantises well; int8 is kept where it also ran faster.
    assert model.record["int8_vs_fp32_min_cosine"] >= INT8_MIN_COSINE
    assert model.precision == int8_decision(model.record)


def test_a_writable_model_folder_keeps_its_export_beside_the_model(tmp_path, minilm_folder):
    folder = write_tiny_bert_folder(tmp_path / "tower", minilm_folder)
    tower = load_text_tower(str(folder), runtime="onnx", export_dir=str(tmp_path / "elsewhere"))
    assert isinstance(tower, OnnxBertTower)
    assert tower.model.path.parent == folder / ".lookalike-onnx"
    assert not (tmp_path / "elsewhere").exists()


def test_a_second_load_reuses_the_export(tmp_path: Path, minilm_folder: Path):
    folder = write_tiny_bert_folder(tmp_path / "tower", minilm_folder)
    native = numpy_tower(str(folder))
    first = export_bert(native, tmp_path / "cache", threads=1)
    stamp = first.path.stat().st_mtime_ns
    second = export_bert(native, tmp_path / "cache", threads=1)
    assert first.exported and not second.exported
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp
    assert np.array_equal(
        OnnxBertTower(native, first).encode(TEXTS), OnnxBertTower(native, second).encode(TEXTS)
    )


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "bad record"])
def test_a_damaged_cache_is_exported_again(tmp_path: Path, minilm_folder: Path, damage: str):
    folder = write_tiny_bert_folder(tmp_path / "tower", minilm_folder)
    native = numpy_tower(str(folder))
    first = export_bert(native, tmp_path / "cache", threads=1)
    expected = OnnxBertTower(native, first).encode(TEXTS)
    if damage == "garbage":
        first.path.write_bytes(os.urandom(first.path.stat().st_size))
    elif damage == "truncated":
        first.path.write_bytes(first.path.read_bytes()[:1000])
    elif damage == "missing":
        first.path.unlink()
    else:
        (tmp_path / "cache" / f"bert-{native.fingerprint}.json").write_text("{not json")
    again = export_bert(native, tmp_path / "cache", threads=1)
    assert again.exported
    assert cosines(OnnxBertTower(native, again).encode(TEXTS), expected).min() >= FP32_MIN_COSINE


def test_a_file_that_matches_its_record_but_does_not_load_is_exported_again(
    tmp_path: Path, minilm_folder: Path
):
    folder = write_tiny_bert_folder(tmp_path / "tower", minilm_folder)
    native = numpy_tower(str(folder))
    first = export_bert(native, tmp_path / "cache", threads=1)
    first.path.write_bytes(b"not a protobuf at all")
    record_path = tmp_path / "cache" / f"bert-{native.fingerprint}.json"
    record = json.loads(record_path.read_text())
    record["sha256"] = hashlib.sha256(b"not a protobuf at all").hexdigest()
    record_path.write_text(json.dumps(record))
    again = export_bert(native, tmp_path / "cache", threads=1)
    assert again.exported and again.path.stat().st_size > 1000


def test_auto_falls_back_to_numpy_with_a_reason_when_the_export_cannot_be_written(
    tmp_path: Path, minilm_folder: Path, caplog
):
    native = numpy_tower(DEFAULT_TEXT_MODEL)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    auto = TextTowerOptions(runtime="auto", export_dir=str(blocker))
    with caplog.at_level(logging.WARNING, logger="lookalike.encode.text.bert_onnx"):
        tower = with_runtime(native, auto)
    assert tower is native and tower.runtime == "numpy"
    assert any("runs in numpy" in record.getMessage() for record in caplog.records)
    with pytest.raises(ModelError):
        with_runtime(native, TextTowerOptions(runtime="onnx", export_dir=str(blocker)))


def test_native_keeps_the_numpy_tower(minilm_export):
    native = numpy_tower(DEFAULT_TEXT_MODEL)
    assert with_runtime(native, TextTowerOptions(runtime="native")) is native
