"""How a FAISS index is saved: one file per save named by one pointer, made current under a
cross-process lock only when it is at least as far along the catalog log as the saved one;
on load, an index of another catalog or ahead of the log is rebuilt; the first layout
(`index.faiss` + `index.json`) still loads."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog import Product, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.files.lock import exclusive_lock
from lookalike.index import FlatIndex, IndexMeta, open_index
from lookalike.index.persist import LOCK_FILE, META_FILE, read_meta, save_snapshot, saved_meta
from lookalike.index.planner import index_planner

FIXTURE = Path(__file__).parents[1] / "fixtures" / "old_data_dir_0818a52" / "data"
DIM = 16


def unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def flat(directory: Path, count: int, watermark: int, catalog_id: str | None = "cat-1"):
    index = FlatIndex(IndexMeta("flat", DIM, "m1", catalog_id=catalog_id), directory)
    index.add(np.arange(count, dtype=np.int64), unit(count))
    index.meta.watermark = watermark
    return index


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_each_save_is_a_new_file_named_by_the_pointer_and_old_ones_go(tmp_path: Path):
    for count in (5, 6, 7):
        flat(tmp_path, count, watermark=count).save()
    assert files(tmp_path) == [LOCK_FILE, "index-00000002.faiss", "index-00000003.faiss", META_FILE]
    meta = read_meta(tmp_path / META_FILE)
    assert (meta.snapshot, meta.watermark, meta.format_version) == (3, 7, 2)
    loaded = FlatIndex.load(tmp_path)
    assert len(loaded) == 7 and loaded.meta.watermark == 7 and loaded.meta.snapshot == 3


def test_a_save_behind_the_saved_index_is_dropped(tmp_path: Path):
    ahead, behind = flat(tmp_path, 10, watermark=10), flat(tmp_path, 4, watermark=4)
    assert ahead.publish()
    assert not behind.publish()
    assert len(FlatIndex.load(tmp_path)) == 10
    # As far along (e.g. tuned search knobs): replaces it.
    level = flat(tmp_path, 10, watermark=10)
    level.meta.params["note"] = "tuned"
    assert level.publish()
    assert FlatIndex.load(tmp_path).meta.params == {"note": "tuned"}
    # Another catalog's index: its watermark counts another log, so it does not protect it.
    assert flat(tmp_path, 3, watermark=3, catalog_id="cat-2").publish()
    assert FlatIndex.load(tmp_path).meta.catalog_id == "cat-2"


def test_a_save_waits_for_the_lock(tmp_path: Path):
    index = flat(tmp_path, 5, watermark=5)
    with exclusive_lock(tmp_path / LOCK_FILE):
        saving = threading.Thread(target=index.save)
        saving.start()
        time.sleep(0.5)
        # The file is written meanwhile; it is not made current while the lock is held.
        assert saving.is_alive() and not (tmp_path / META_FILE).exists()
    saving.join(timeout=10)
    assert read_meta(tmp_path / META_FILE).watermark == 5


def test_a_failed_save_leaves_the_saved_pair_and_stale_temp_files_go(tmp_path: Path):
    flat(tmp_path, 5, watermark=5).save()

    def write_half(tmp: str) -> None:
        Path(tmp).write_bytes(b"half an index")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_snapshot(tmp_path, IndexMeta("flat", DIM, "m1", watermark=9), write_half)
    assert not list(tmp_path.glob("*.tmp"))
    assert read_meta(tmp_path / META_FILE).watermark == 5
    assert len(FlatIndex.load(tmp_path)) == 5
    # A SIGKILLed save leaves its temporary file: removed by a later save once it is old.
    old, fresh = tmp_path / ".index-dead.tmp", tmp_path / ".index-writing.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    flat(tmp_path, 6, watermark=6).save()
    assert not old.exists() and fresh.exists()


def settings(data_dir: Path, **values) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, index_type="flat", **values)


def fill(catalog: SQLiteCatalog, ids: range, seed: int = 0) -> None:
    vectors = unit(len(ids), seed)
    catalog.upsert(
        [
            ProductWrite(Product(id=f"p{i}", model_id="m1"), v)
            for i, v in zip(ids, vectors, strict=True)
        ]
    )


def catalog_ids(catalog: SQLiteCatalog) -> set[int]:
    return {int(i) for ids, _ in catalog.iter_embeddings() for i in ids}


def test_an_index_of_another_catalog_is_rebuilt(tmp_path: Path):
    s = settings(tmp_path / "data")
    first = SQLiteCatalog(tmp_path / "first.db")
    fill(first, range(30))
    open_index(s, first, DIM, "m1").save(force=True)
    saved = saved_meta(s.data_dir / "index")
    assert saved is not None and saved.catalog_id == first.get_meta("catalog_id")

    other = SQLiteCatalog(tmp_path / "other.db")
    fill(other, range(12), seed=3)
    live = open_index(s, other, DIM, "m1")
    assert live.index.meta.catalog_id == other.get_meta("catalog_id")
    assert set(live.index.ids().tolist()) == catalog_ids(other)


def test_an_index_ahead_of_a_restored_catalog_is_rebuilt(tmp_path: Path):
    s = settings(tmp_path / "data")
    db = tmp_path / "catalog.db"
    catalog = SQLiteCatalog(db)
    fill(catalog, range(20))
    catalog.close()
    shutil.copy(db, tmp_path / "backup.db")
    catalog = SQLiteCatalog(db)
    fill(catalog, range(20, 40), seed=1)
    live = open_index(s, catalog, DIM, "m1")
    live.save(force=True)
    assert live.watermark == 40
    catalog.close()

    shutil.copy(tmp_path / "backup.db", db)  # the catalog restored from its backup
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    restored = SQLiteCatalog(db)
    live = open_index(s, restored, DIM, "m1")
    assert live.watermark == restored.log_head() == 20
    assert set(live.index.ids().tolist()) == catalog_ids(restored)


def test_a_pointer_to_a_missing_file_is_rebuilt(tmp_path: Path):
    s = settings(tmp_path / "data")
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    fill(catalog, range(10))
    open_index(s, catalog, DIM, "m1")
    for path in (s.data_dir / "index").glob("index-*.faiss"):
        path.unlink()
    live = open_index(s, catalog, DIM, "m1")
    assert set(live.index.ids().tolist()) == catalog_ids(catalog)


@pytest.mark.parametrize("memory", ["private", "mapped"])
def test_the_first_layout_still_loads(tmp_path: Path, memory: str):
    """`index.faiss` + `index.json` as today's main wrote them (the 0818a52 fixture)."""
    data_dir = tmp_path / "data"
    shutil.copytree(FIXTURE, data_dir)
    old = read_meta(data_dir / "index" / META_FILE)
    assert old.format_version == 1 and old.catalog_id is None
    with sqlite3.connect(data_dir / "catalog.db") as conn:
        (catalog_id,) = conn.execute("SELECT value FROM meta WHERE key = 'catalog_id'").fetchone()
    catalog = SQLiteCatalog(data_dir / "catalog.db")
    s = settings(data_dir, index_memory=memory)
    planner = index_planner(s, catalog, old.dim, old.model_id)
    loaded = planner.load(mapped=memory == "mapped")
    assert loaded is not None, "the old index was not loaded"
    assert (len(loaded), loaded.meta.watermark, loaded.meta.snapshot) == (12, 12, 0)
    assert loaded.meta.catalog_id == catalog_id  # adopted: it was saved with this catalog

    live = open_index(s, catalog, old.dim, old.model_id)
    assert live.watermark == 12 and len(live.index) == 12
    vector = np.ones(old.dim, dtype=np.float32) / np.sqrt(old.dim)
    catalog.upsert([ProductWrite(Product(id="new", model_id=old.model_id), vector)])
    live.catch_up()
    live.save(force=True)
    saved = read_meta(data_dir / "index" / META_FILE)
    assert (saved.snapshot, saved.catalog_id, saved.format_version) == (1, catalog_id, 2)
    assert "index.faiss" in files(data_dir / "index")  # kept as the previous snapshot
