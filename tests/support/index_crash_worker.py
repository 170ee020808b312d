"""The processes of the index crash test (tests/index/test_index_crash_safety.py), sharing
one data dir: writers that write products with synthetic vectors straight to the catalog
and apply them to their index (saving often), and a reader that searches without pause.

    python -m tests.support.index_crash_worker writer DATA_DIR NAME MEMORY SEED
    python -m tests.support.index_crash_worker reader DATA_DIR STATS_FILE SEED

A writer runs until it is killed. The reader runs until SIGTERM, then writes what it saw
(searches, loads, errors) to STATS_FILE as JSON.

Every index the reader loads is checked against the change log as of its watermark: a
vector id is added once and removed at most once (each embedding gets a fresh one), so
the log says exactly which ids an index at watermark W must hold (added by W and never
removed), and which it must not (removed by W, or added after W). An index saved with a
watermark that is not its own fails this at once.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import sys
import traceback
from pathlib import Path

import numpy as np

from lookalike.catalog import Product, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.files.atomic import write_json_atomic
from lookalike.index import LiveIndex, open_index
from lookalike.index.faiss_index import FaissIndex
from lookalike.index.mapped import MappedIndex
from lookalike.index.planner import index_planner

DIM = 16
MODEL = "m1"
STABLE = 200  # products written before the processes start and never changed


def settings(data_dir: Path, memory: str) -> Settings:
    """Saves as often as writes come (0.2 s), folds a mapped delta past 40 entries."""
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        index_type="flat",
        index_memory=memory,
        index_save_interval_s=0.2,
        index_delta_max=40,
    )


def vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((count, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def write_stable(data_dir: Path, seed: int) -> None:
    """The products every search of the reader looks for."""
    catalog = SQLiteCatalog(data_dir / "catalog.db")
    rows = vectors(STABLE, np.random.default_rng(seed))
    catalog.upsert(
        [ProductWrite(Product(id=f"stable-{i}", model_id=MODEL), rows[i]) for i in range(STABLE)]
    )
    catalog.close()


def writer(data_dir: Path, name: str, memory: str, seed: int) -> None:
    """Adds, re-embeds and deletes its own products, applying each batch to its index."""
    rng = np.random.default_rng(seed)
    catalog = SQLiteCatalog(data_dir / "catalog.db")
    live = open_index(settings(data_dir, memory), catalog, DIM, MODEL)
    mine: list[str] = []
    made = 0
    while True:
        roll = rng.random()
        if roll < 0.6 or len(mine) < 10:
            ids = [f"{name}-{made + i}" for i in range(int(rng.integers(1, 8)))]
            made += len(ids)
            mine.extend(ids)
        else:
            picked = rng.choice(len(mine), size=int(rng.integers(1, 5)), replace=False)
            ids = [mine[i] for i in picked]
        if roll < 0.8 or len(mine) < 10:
            writes = zip(ids, vectors(len(ids), rng), strict=True)
            catalog.upsert([ProductWrite(Product(id=i, model_id=MODEL), v) for i, v in writes])
        else:
            catalog.delete(ids)
            mine = [i for i in mine if i not in set(ids)]
        live.apply_writes()


class Reader:
    """Searches the stable products through a mapped index kept caught up (as a worker
    does), and through private indexes loaded from disk while the writers save."""

    def __init__(self, data_dir: Path, seed: int) -> None:
        self.data_dir = data_dir
        self.rng = np.random.default_rng(seed)
        self.catalog = SQLiteCatalog(data_dir / "catalog.db")
        self.stable = [self.catalog.embedding(f"stable-{i}") for i in range(STABLE)]
        self.searches = self.loads = self.load_failures = 0
        self.errors: list[str] = []
        self.stopped = False

    def run(self) -> None:
        mapped = open_index(settings(self.data_dir, "mapped"), self.catalog, DIM, MODEL)
        rounds = 0
        while not self.stopped:
            rounds += 1
            try:
                mapped.catch_up()
                self.check(mapped)
                if rounds % 10 == 0:
                    self.check_against_log(mapped.index)
                    self.check(self.load(mapped=rounds % 20 == 0))
            except Exception:
                self.errors.append(traceback.format_exc())

    def load(self, *, mapped: bool) -> LiveIndex:
        """The saved index, loaded (it must always load), checked against the log as of its
        watermark, then caught up."""
        memory = "mapped" if mapped else "private"
        planner = index_planner(settings(self.data_dir, memory), self.catalog, DIM, MODEL)
        index = planner.load_mapped() if mapped else planner.load()
        self.loads += 1
        if index is None:
            self.load_failures += 1
            raise RuntimeError("the saved index did not load")
        self.check_against_log(index)
        live = LiveIndex(index, self.catalog)
        live.catch_up()
        return live

    def check_against_log(self, index: FaissIndex | MappedIndex) -> None:
        holds, watermark = index.ids(), index.meta.watermark
        must, must_not = self.log_at(watermark)
        missing, stale = np.setdiff1d(must, holds), np.intersect1d(must_not, holds)
        if len(missing) or len(stale) or len(np.unique(holds)) != len(index):
            raise AssertionError(
                f"{type(index).__name__} at log entry {watermark} does not match the log: "
                f"missing {missing[:10]}, removed but present {stale[:10]}, "
                f"{len(index)} entries for {len(np.unique(holds))} distinct ids"
            )

    def log_at(self, watermark: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids an index at `watermark` must hold, ids it must not hold), from the log."""
        with contextlib.closing(sqlite3.connect(self.data_dir / "catalog.db")) as conn:
            rows = np.array(
                conn.execute("SELECT seq, vector_id, op FROM vector_log WHERE op != 0").fetchall(),
                dtype=np.int64,
            ).reshape(-1, 3)
        seq, vector_id, op = rows.T
        added, removed = vector_id[op > 0], vector_id[op < 0]
        added_by = vector_id[(op > 0) & (seq <= watermark)]
        removed_by = vector_id[(op < 0) & (seq <= watermark)]
        must = np.setdiff1d(added_by, removed)  # still live now, so never removed
        must_not = np.union1d(removed_by, np.setdiff1d(added, added_by))
        return must, must_not

    def check(self, live: LiveIndex) -> None:
        vector_id, vector = self.stable[int(self.rng.integers(STABLE))]
        _, found = live.index.search(vector[None, :], 5)
        self.searches += 1
        if found[0, 0] != vector_id:
            raise AssertionError(f"stable vector {vector_id} not found first: {found[0]}")

    def report(self, path: Path) -> None:
        counts = {"searches": self.searches, "loads": self.loads}
        failures = {"load_failures": self.load_failures, "errors": self.errors[:20]}
        write_json_atomic(path, {**counts, **failures, "error_count": len(self.errors)})


def main(argv: list[str]) -> None:
    role, data_dir = argv[0], Path(argv[1])
    if role == "writer":
        name, memory, seed = argv[2], argv[3], int(argv[4])
        writer(data_dir, name, memory, seed)
    elif role == "reader":
        stats_file, seed = Path(argv[2]), int(argv[3])
        reader = Reader(data_dir, seed)

        def stop(*_: object) -> None:
            reader.stopped = True

        signal.signal(signal.SIGTERM, stop)
        print(json.dumps({"ready": True}), flush=True)
        reader.run()
        reader.report(stats_file)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
