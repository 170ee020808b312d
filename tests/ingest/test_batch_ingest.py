"""Batch ingest end to end: real files, real model, real SQLite + FAISS."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike import Engine, Settings
from tests.support.images import pattern_image, write_images


def bad_files(folder: Path) -> dict[str, str]:
    """One file per way an image can be bad -> the words its reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = io.BytesIO()
    Image.new("RGB", (200, 200), "red").save(jpeg, "JPEG")
    bomb = io.BytesIO()
    Image.new("L", (9000, 9000)).save(bomb, "PNG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[:400])
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_bytes(b"just some text pretending to be a jpeg")
    (folder / "bomb.png").write_bytes(bomb.getvalue())
    Image.new("RGB", (20, 20)).save(folder / "tiny.png")
    return {
        "truncated.jpg": "truncated",
        "zero.png": "empty",
        "text.jpg": "not an image",
        "bomb.png": "decompression bomb",
        "tiny.png": "too small",
    }


def test_folder_with_bad_files_indexes_every_good_one_and_reports_each_bad(
    engine: Engine, photo_folder: Path
):
    expected = {f"bad/{name}": words for name, words in bad_files(photo_folder / "bad").items()}
    report = engine.index_path(photo_folder)
    assert report.added == 24 and len(report.failed) == len(expected)
    reasons = {bad.id: bad.reason for bad in report.failed}
    assert set(reasons) == set(expected)
    for item_id, words in expected.items():
        assert words in reasons[item_id], (item_id, reasons[item_id])
    assert engine.catalog.stats().searchable == 24 == len(engine.live_index.index)
    saved = sorted((engine.settings.data_dir / "reports").glob("ingest-*.json"))
    assert json.loads(saved[-1].read_text())["failed_count"] == len(expected)


def test_exact_duplicate_comes_back_first_with_score_one(engine: Engine, photo_folder: Path):
    engine.index_path(photo_folder)
    query = photo_folder / "cat1" / "item_0007.png"
    results = engine.search_image(query.read_bytes(), limit=5)
    top = results.hits[0]
    assert top.product.id == "cat1/item_0007.png" and abs(top.similarity - 1.0) < 1e-4
    assert results.hits[1].similarity < top.similarity and results.total_found == 24


def test_reindexing_is_idempotent_and_detects_changes(engine: Engine, photo_folder: Path):
    engine.index_path(photo_folder)
    head = engine.catalog.log_head()
    again = engine.index_path(photo_folder)
    assert (again.added, again.reencoded, again.unchanged) == (0, 0, 24)
    assert engine.catalog.log_head() == head and len(engine.live_index.index) == 24

    pattern_image(999).save(photo_folder / "cat0" / "item_0000.png")  # new content
    write_images(photo_folder, 2, start=100)  # two new files
    report = engine.index_path(photo_folder)
    assert (report.added, report.reencoded, report.unchanged) == (2, 1, 23)
    assert engine.catalog.stats().products == 26 == len(engine.live_index.index)


def test_manifest_metadata_change_does_not_re_encode(engine: Engine, tmp_path: Path):
    write_images(tmp_path / "img", 3)
    rows = [
        {
            "id": f"sku{i}",
            "image": f"img/cat{i % 2}/item_{i:04d}.png",
            "title": "shirt",
            "price": 10 + i,
        }
        for i in range(3)
    ]
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    engine.index_path(manifest)
    vector_ids = {p: engine.catalog.get(p).vector_id for p in ("sku0", "sku1", "sku2")}
    rows[1]["price"] = 99
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    report = engine.index_path(manifest)
    assert (report.metadata_updated, report.unchanged, report.reencoded) == (1, 2, 0)
    assert engine.catalog.get("sku1").price == 99
    assert {p: engine.catalog.get(p).vector_id for p in vector_ids} == vector_ids


def test_index_and_catalog_survive_a_restart(settings: Settings, photo_folder: Path):
    with Engine(settings) as first:
        first.index_path(photo_folder)
        before = first.search_text("a picture", limit=5).to_dict()["results"]
    with Engine(settings) as second:
        assert len(second.live_index.index) == 24
        after = second.search_text("a picture", limit=5).to_dict()["results"]
    assert [r["id"] for r in after] == [r["id"] for r in before]


def test_model_change_is_detected_and_reindex_re_encodes(
    settings: Settings, photo_folder: Path, tmp_path: Path
):
    from tests.support.tiny_models import build_tiny_openclip

    with Engine(settings) as engine:
        engine.index_path(photo_folder)
    other = settings.model_copy(
        update={"model_checkpoint": str(build_tiny_openclip(tmp_path / "other", seed=7))}
    )
    with Engine(other) as engine:
        try:
            engine.search_text("x")
            raise AssertionError("searching another model's embeddings must fail")
        except Exception as exc:
            assert type(exc).__name__ == "ModelMismatch" and "reindex" in str(exc)
        report = engine.reindex()
        assert report.reencoded == 24
        assert len(engine.search_text("x", limit=3).hits) == 3


def test_killed_ingest_resumes_without_duplicates(settings: Settings, tmp_path: Path):
    folder = tmp_path / "many"
    write_images(folder, 400)
    env = {
        **os.environ,
        "LOOKALIKE_DATA_DIR": str(settings.data_dir),
        "LOOKALIKE_MODEL_CHECKPOINT": settings.model_checkpoint,
        "LOOKALIKE_ENCODE_BATCH_SIZE": "2",
        "LOOKALIKE_INGEST_WORKERS": "1",
        "LOOKALIKE_DEVICE": "cpu",
    }
    cmd = [sys.executable, "-m", "lookalike.cli", "index", str(folder), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = settings.data_dir / "catalog.db"
    committed = 0
    deadline = time.monotonic() + 120
    while committed < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
        if db.exists():
            try:
                committed = (
                    sqlite3.connect(db).execute("SELECT COUNT(*) FROM products").fetchone()[0]
                )
            except sqlite3.OperationalError:
                committed = 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:
        at_kill = conn.execute("SELECT COUNT(*) FROM products").fetchone()[0]
    assert 0 < at_kill < 400, "the ingest must be killed part-way for this test to mean anything"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{400 - at_kill} added" in done.stdout and f"{at_kill} unchanged" in done.stdout
    with Engine(settings) as engine:
        stats = engine.catalog.stats()
        assert stats.products == 400 == stats.searchable == len(engine.live_index.index)
        _, found = engine.live_index.index.search(np.zeros((1, 32), np.float32) + 0.1, 400)
        catalog_ids = {int(i) for ids, _ in engine.catalog.iter_embeddings() for i in ids}
        assert set(found[0].tolist()) == catalog_ids
