"""Two writer processes and a reader on one data dir; the writers are killed with SIGKILL at
seeded random points and restarted, for a bounded time. Afterwards no item is lost and
none duplicated (the saved index, caught up, holds exactly the catalog's vectors), the
saved index always loaded, and every search of the reader answered, correctly.

One writer holds a private index (as `lookalike index` or `lookalike consume` do), the
other a mapped one that folds its delta into the saved file (as a `serve` worker does);
the reader maps the saved index and keeps it caught up, and loads private copies from
disk while the writers save. Processes are in tests/support/index_crash_worker.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lookalike
from lookalike.catalog import ProductFilter
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.index import open_index
from lookalike.index.persist import saved_meta
from lookalike.index.planner import index_planner
from tests.support.index_crash_worker import DIM, MODEL, STABLE, settings, write_stable

SEED = 20261130
DURATION_S = 90.0
KILL_EVERY_S = (0.3, 2.5)  # uniform: a writer is killed, then restarted at once or soon
RESTART_AFTER_S = (0.0, 0.4)
ROOT = Path(__file__).resolve().parents[2]


def spawn(*args: str, output: Path) -> subprocess.Popen:
    src = str(Path(lookalike.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(ROOT)])}
    command = [sys.executable, "-m", "tests.support.index_crash_worker", *args]
    with open(output, "ab") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)


@pytest.mark.slow
def test_writers_killed_at_random_lose_nothing_and_searches_always_answer(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_stable(data_dir, SEED)
    rng = np.random.default_rng(SEED)
    logs = tmp_path / "logs"
    logs.mkdir()
    stats_file = tmp_path / "reader.json"

    generation = {"a": 0, "b": 0}
    memory = {"a": "private", "b": "mapped"}

    def start_writer(name: str) -> subprocess.Popen:
        generation[name] += 1
        tag = f"{name}{generation[name]}"
        seed = str(int(rng.integers(1 << 31)))
        return spawn("writer", str(data_dir), tag, memory[name], seed, output=logs / f"{name}.log")

    writers = {name: start_writer(name) for name in generation}
    reader = spawn("reader", str(data_dir), str(stats_file), str(SEED), output=logs / "reader.log")
    kills = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < DURATION_S:
            time.sleep(rng.uniform(*KILL_EVERY_S))
            name = str(rng.choice(sorted(writers)))
            exited = writers[name].poll()
            assert exited is None, f"writer {name} exited by itself ({exited}):\n{tail(logs, name)}"
            writers[name].send_signal(signal.SIGKILL)
            writers[name].wait()
            kills += 1
            assert reader.poll() is None, f"the reader died:\n{tail(logs, 'reader')}"
            time.sleep(rng.uniform(*RESTART_AFTER_S))
            writers[name] = start_writer(name)
    finally:
        for process in writers.values():
            process.kill()
            process.wait()
        reader.send_signal(signal.SIGTERM)
        try:
            reader.wait(timeout=60)
        except subprocess.TimeoutExpired:
            reader.kill()
            reader.wait()
    duration = time.monotonic() - started

    seen = json.loads(stats_file.read_text())
    catalog = SQLiteCatalog(data_dir / "catalog.db")
    expected = catalog.filter_vector_ids(ProductFilter())
    saved = saved_meta(data_dir / "index")
    assert saved is not None
    statistics = {
        "duration_s": round(duration, 1),
        "kills": kills,
        "restarts": kills,
        "writer_generations": dict(generation),
        "products": catalog.stats().products,
        "log_entries": catalog.log_head(),
        "saves": saved.snapshot,
        **{k: seen[k] for k in ("searches", "loads", "load_failures", "error_count")},
    }
    print(f"\nindex crash test: {json.dumps(statistics)}")
    assert seen["error_count"] == 0, "\n".join(seen["errors"])
    assert seen["load_failures"] == 0
    assert seen["searches"] > 100 and seen["loads"] > 10, statistics
    assert kills >= 20 and catalog.stats().products > STABLE + 100, statistics

    # The saved pair: this catalog's, not ahead of its log, and old snapshots removed.
    assert saved.catalog_id == catalog.get_meta("catalog_id")
    assert saved.watermark <= catalog.log_head()
    assert len(list((data_dir / "index").glob("index-*.faiss"))) <= 2
    for kind in ("private", "mapped"):
        s = settings(data_dir, kind)
        # It loads as saved (no rebuild), and once caught up holds exactly the catalog.
        assert index_planner(s, catalog, DIM, MODEL).load(mapped=kind == "mapped") is not None
        live = open_index(s, catalog, DIM, MODEL)
        ids = live.index.ids()
        assert len(live.index) == len(ids) == len(expected), (kind, statistics)
        lost, extra = np.setdiff1d(expected, ids), np.setdiff1d(ids, expected)
        assert not len(lost) and not len(extra), (kind, lost[:10], extra[:10])
        assert len(np.unique(ids)) == len(ids), f"{kind}: duplicated ids"
    catalog.close()


def tail(logs: Path, name: str) -> str:
    path = logs / f"{name}.log"
    return path.read_text()[-3000:] if path.exists() else ""
