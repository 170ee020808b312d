"""Memory per worker of `lookalike serve --workers N`: each worker's private copy of the
index (before: `LOOKALIKE_INDEX_MEMORY=private`) against one saved file mapped by every
worker (after: `mapped`), for 1, 2 and 4 workers, on the demo catalog (70k x 384) and a
synthetic catalog of `--synthetic` items (1M x 384 by default, flat index: 1.5 GB).

Each configuration starts the real server, sends "similar" searches (stored embedding,
no encoding; every one scans the whole flat index) from concurrent clients so that every
worker searches, then reads each worker's /proc/<pid>/smaps_rollup: RSS counts every page
a worker touches, shared or not; PSS splits shared pages between the processes mapping
them, so the PSS summed over workers is what the workers cost the machine.

    PYTHONPATH=src:. python benchmarks/worker_memory.py --demo-data demo-data/lookalike-data \\
        --model demo-data/model --synthetic 1000000

`--families N` measures instead what FAISS maps for each family (flat, HNSW, IVF-PQ of N
synthetic vectors): one and two bare processes (no server, no model) each load the saved
index, privately or mapped, and search it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.multiprocess import MultiProcessCollector
from synthetic import ClipLike
from tests.support.api_catalog import free_port, stop_server
from tqdm.auto import tqdm

from lookalike.catalog import Product, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.index.base import IndexMeta
from lookalike.index.families import FAISS_FAMILIES
from lookalike.index.ivfpq import IvfPqIndex
from lookalike.index.persist import saved_meta, snapshot_path
from lookalike.index.planner import index_planner

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "worker_memory.jsonl"
MiB = 2**20
FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File")


# --- data dirs -----------------------------------------------------------------------------
def demo_copy(source: Path, target: Path) -> Path:
    """A copy of the demo data dir (catalog and index): the benchmark never writes the
    original."""
    if not (target / "catalog.db").exists():
        target.mkdir(parents=True, exist_ok=True)
        with (
            sqlite3.connect(source / "catalog.db") as src,
            sqlite3.connect(target / "catalog.db") as dst,
        ):
            src.backup(dst)
        shutil.copytree(source / "index", target / "index", dirs_exist_ok=True)
    return target


def synthetic_dir(target: Path, items: int, model_id: str, dim: int) -> Path:
    """A catalog of `items` CLIP-like vectors under the model's id (built once)."""
    catalog = SQLiteCatalog(target / "catalog.db")
    try:
        done = catalog.stats().products
        block = 20_000
        with tqdm(total=items, initial=done, desc="synthetic catalog", unit="item") as bar:
            for start in range(done, items, block):
                stop = min(start + block, items)
                rows = ClipLike(dim=dim).vectors(stop - start, stream=start // block)
                catalog.upsert(
                    [
                        ProductWrite(Product(id=f"sku-{i:07d}", model_id=model_id), rows[i - start])
                        for i in range(start, stop)
                    ]
                )
                bar.update(stop - start)
    finally:
        catalog.close()
    return target


def ensure_flat_index(data_dir: Path, model: Path, dim: int, model_id: str) -> int:
    """A saved flat index of the catalog (built from the stored embeddings when missing);
    returns its file size."""
    settings = Settings(_env_file=None, data_dir=data_dir, model_checkpoint=str(model))
    directory = data_dir / "index"
    meta = saved_meta(directory) if directory.exists() else None
    if meta is None or meta.kind != "flat":
        catalog = SQLiteCatalog(data_dir / "catalog.db")
        planner = index_planner(settings, catalog, dim, model_id)
        planner.build(planner.plan("flat"), progress=True).save()
        catalog.close()
        meta = saved_meta(directory)
    assert meta is not None
    return snapshot_path(directory, meta.snapshot).stat().st_size


def product_ids(data_dir: Path, count: int) -> list[str]:
    """Products drawn at random (by primary key: no scan of a million wide rows)."""
    with sqlite3.connect(data_dir / "catalog.db") as conn:
        (last,) = conn.execute("SELECT MAX(pk) FROM products").fetchone()
        picked = np.random.default_rng(0).integers(1, last + 1, size=count).tolist()
        marks = ",".join("?" * len(picked))
        rows = conn.execute(
            f"SELECT id FROM products WHERE pk IN ({marks}) AND vector_id IS NOT NULL", picked
        ).fetchall()
    return [r[0] for r in rows]


# --- one server ----------------------------------------------------------------------------
def worker_pids(server: subprocess.Popen, workers: int) -> list[int]:
    if workers == 1:
        return [server.pid]
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server.pid and b"spawn_main" in command:
            pids.append(int(entry.name))
    return sorted(pids)


def smaps(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, amount, *_ = line.split()
        values[name.rstrip(":")] = int(amount) * 1024
    return values


def searches_by_worker(metrics_dir: Path, pid: int) -> int:
    files = [str(p) for p in metrics_dir.glob(f"*_{pid}.db")]
    total = 0
    for metric in MultiProcessCollector.merge(files, accumulate=False) if files else []:
        for sample in metric.samples:
            if sample.name == "lookalike_search_requests_total":
                total += int(sample.value)
    return total


def measure(
    data_dir: Path, model: Path, memory: str, workers: int, ids: list[str], per_worker: int
) -> dict[str, Any]:
    port = free_port()
    metrics_dir = Path(tempfile.mkdtemp(prefix="worker-memory-metrics-"))
    src = str(HERE.parent / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "LOOKALIKE_MODEL_CHECKPOINT": str(model),
        "LOOKALIKE_INDEX_TYPE": "flat",
        "LOOKALIKE_INDEX_MEMORY": memory,
        "LOOKALIKE_METRICS_DIR": str(metrics_dir),
        "LOOKALIKE_SEARCH_LOG": "false",
    }
    command = [sys.executable, "-m", "lookalike.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--workers", str(workers)]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready_s, counts, per_pid = _run(
                server, log, metrics_dir, workers, ids, per_worker, port
            )
        finally:
            stop_server(server)
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return {
        "memory": memory,
        "workers": workers,
        "ready_s": round(ready_s, 1),
        "searches_per_worker": counts,
        **{f"{f.lower()}_mib": [round(m.get(f, 0) / MiB) for m in per_pid] for f in FIELDS},
    }


def _run(
    server: subprocess.Popen,
    log: Any,
    metrics_dir: Path,
    workers: int,
    ids: list[str],
    per_worker: int,
    port: int,
) -> tuple[float, list[int], list[dict[str, int]]]:
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    wait_ready(server, url, workers, log)
    ready_s = time.monotonic() - started
    pids = worker_pids(server, workers)
    queue = iter(ids)
    if workers == 1:
        search(url, [next(queue) for _ in range(per_worker)], 2)
        return ready_s, [per_worker], [smaps(server.pid)]
    # Concurrent clients, a new connection per request, until every worker has searched
    # `per_worker` times (a worker still starting takes no connections).
    deadline = time.monotonic() + 900
    while True:
        counts = [searches_by_worker(metrics_dir, pid) for pid in pids]
        if min(counts) >= per_worker:
            return ready_s, counts, [smaps(pid) for pid in pids]
        if time.monotonic() > deadline:
            raise RuntimeError(f"searches per worker after 15 minutes: {counts}")
        search(url, [next(queue) for _ in range(2 * workers)], 2 * workers)


def search(url: str, product_ids: list[str], clients: int) -> None:
    """ "More like this" for each product: a scan of the whole flat index."""
    with ThreadPoolExecutor(max_workers=clients) as pool:
        codes = set(
            pool.map(
                lambda pid: (
                    httpx.get(
                        f"{url}/v1/products/{pid}/similar", params={"limit": 10}, timeout=600
                    ).status_code
                ),
                product_ids,
            )
        )
    if codes != {200}:
        raise RuntimeError(f"searches answered {sorted(codes)}")


def wait_ready(server: subprocess.Popen, url: str, workers: int, log: Any) -> None:
    """Until the index is open and every worker reports (not /readyz: it counts the
    catalog's rows, a minute on a million items)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"serve exited:\n{log.read().decode()[-3000:]}")
        try:
            samples = gauges(url)
            opened = samples.get("lookalike_index_vectors", 0) > 0
            if opened and (workers == 1 or samples.get("lookalike_processes") == workers):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("serve did not become ready")


def gauges(url: str) -> dict[str, float]:
    """The label-less samples of /metrics."""
    found = {}
    for line in httpx.get(f"{url}/metrics", timeout=60).text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, amount = line.split()[:2]
            found[name] = float(amount)
    return found


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# --- families, without a server ------------------------------------------------------------
FAMILY_PARAMS: dict[str, dict[str, Any]] = {
    "flat": {},
    "hnsw": {"m": 32, "ef_construction": 80, "ef_search": 128},
    "ivfpq": {"nlist": 1024, "m": 64, "nbits": 8, "nprobe": 32, "rerank": 1},
}


def family_index(cache: Path, kind: str, items: int, dim: int) -> Path:
    """A saved index of `items` synthetic vectors (built once)."""
    directory = cache / f"worker-memory-{kind}-{items}"
    if saved_meta(directory) is None:
        family = FAISS_FAMILIES[kind]
        params = dict(FAMILY_PARAMS[kind])
        index = family(IndexMeta(kind, dim, "synthetic", params=params), directory)
        data = ClipLike(dim=dim).vectors(items)
        if isinstance(index, IvfPqIndex):
            index.train(data[: index.training_size()])
        print(f"building {kind} of {items:,}", flush=True)
        index.add(np.arange(1, items + 1, dtype=np.int64), data)
        index.save()
    return directory


def family_child(kind: str, directory: Path, memory: str) -> None:
    """A bare process: load, search 50 queries, say so, then wait to be measured."""
    index = FAISS_FAMILIES[kind].load(directory, mapped=memory == "mapped")
    index.search(ClipLike(dim=index.meta.dim).vectors(50, stream=99), 10)
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes it


def measure_family(kind: str, directory: Path, memory: str, processes: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, str(directory), memory]
    children = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        per_pid = [smaps(child.pid) for child in children]
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
            child.wait()
    return {
        "family": kind,
        "memory": memory,
        "processes": processes,
        **{f"{f.lower()}_mib": [round(m.get(f, 0) / MiB) for m in per_pid] for f in FIELDS},
    }


def family_table(rows: list[dict[str, Any]], items: int) -> str:
    lines = [
        f"| family ({items:,} x 384) | index file | processes | memory | RSS per process "
        "| PSS anon / file per process | PSS, all processes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        anon, file = np.mean(r["pss_anon_mib"]), np.mean(r["pss_file_mib"])
        lines.append(
            f"| {r['family']} | {r['index_mib']:,} MiB | {r['processes']} | {r['memory']} "
            f"| {np.mean(r['rss_mib']):,.0f} MiB | {anon:,.0f} / {file:,.0f} MiB "
            f"| {sum(r['pss_mib']):,} MiB |"
        )
    return "\n".join(lines)


def run_families(args: argparse.Namespace) -> None:
    rows = []
    for kind in FAMILY_PARAMS:
        directory = family_index(args.cache, kind, args.families, 384)
        meta = saved_meta(directory)
        assert meta is not None
        size = snapshot_path(directory, meta.snapshot).stat().st_size
        for memory in args.memory:
            for processes in (1, 2):
                row = {"items": args.families, "index_mib": round(size / MiB)}
                row.update(measure_family(kind, directory, memory, processes))
                rows.append(row)
                with RESULTS.open("a") as out:
                    out.write(json.dumps({"run": args.run_id, **row}) + "\n")
    print(family_table(rows, args.families))


# --- report --------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| catalog | index file | workers | memory | RSS per worker | PSS per worker "
        "| PSS, all workers | of which anon / file | searches per worker |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(
                f"| {r['catalog']} | {r['index_mib']:,} MiB | {r['workers']} | {r['memory']} "
                f"| skipped: {r['skipped']} | | | | |"
            )
            continue
        rss, pss = r["rss_mib"], r["pss_mib"]
        anon, file = sum(r["pss_anon_mib"]), sum(r["pss_file_mib"])
        lines.append(
            f"| {r['catalog']} | {r['index_mib']:,} MiB | {r['workers']} | {r['memory']} "
            f"| {np.mean(rss):,.0f} MiB | {np.mean(pss):,.0f} MiB | {sum(pss):,} MiB "
            f"| {anon:,} / {file:,} MiB | {', '.join(map(str, r['searches_per_worker']))} |"
        )
    return "\n".join(lines)


def report(run_id: str) -> None:
    """The tables of a run's rows in the results file; a configuration measured again
    (e.g. one skipped for memory, run later on its own) shows its last measurement."""
    servers: dict[tuple, dict[str, Any]] = {}
    families: dict[tuple, dict[str, Any]] = {}
    for line in RESULTS.read_text().splitlines():
        row = json.loads(line)
        if row["run"] not in (run_id, f"{run_id}-families"):
            continue
        if "family" in row:
            families[(row["family"], row["memory"], row["processes"])] = row
        elif "skipped" not in row or (row["catalog"], row["memory"], row["workers"]) not in servers:
            servers[(row["catalog"], row["memory"], row["workers"])] = row
    print(table(list(servers.values())))
    if families:
        items = next(iter(families.values()))["items"]
        print()
        print(family_table(list(families.values()), items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-data", type=Path, default=Path("demo-data/lookalike-data"))
    parser.add_argument("--model", type=Path, default=Path("demo-data/model"))
    parser.add_argument("--synthetic", type=int, default=1_000_000, help="0: demo only")
    parser.add_argument("--workers", default="1,2,4", type=lambda s: [int(w) for w in s.split(",")])
    parser.add_argument("--memory", default="private,mapped", type=lambda s: s.split(","))
    parser.add_argument("--searches", type=int, default=6, help="per worker")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench"
    )
    parser.add_argument("--run-id", default=time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--families", type=int, default=0, help="N: the per-family table")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--report", action="store_true", help="the tables of --run-id's rows")
    args = parser.parse_args()
    if args.report:
        report(args.run_id)
        return
    if args.child:
        family_child(args.child[0], Path(args.child[1]), args.child[2])
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if args.families:
        run_families(args)
        return

    info = create_encoder(Settings(_env_file=None, model_checkpoint=str(args.model))).info
    catalogs: dict[str, Path] = {}
    if args.demo_data.exists():
        catalogs["demo"] = demo_copy(args.demo_data, args.cache / "worker-memory-demo")
    if args.synthetic:
        target = args.cache / f"worker-memory-synthetic-{args.synthetic}"
        catalogs[f"synthetic {args.synthetic:,}"] = synthetic_dir(
            target, args.synthetic, info.model_id, info.dim
        )
    rows = []
    for name, data_dir in catalogs.items():
        index_bytes = ensure_flat_index(data_dir, args.model, info.dim, info.model_id)
        ids = product_ids(data_dir, 50 * args.searches * max(args.workers))
        for memory in args.memory:
            for workers in args.workers:
                row: dict[str, Any] = {"catalog": name, "index_mib": round(index_bytes / MiB)}
                row.update(memory=memory, workers=workers)
                # The index once or per worker, plus about 0.5 GiB of model and runtime each.
                copies = workers if memory == "private" else 1
                need = index_bytes * copies + workers * 2**29
                if need > available_bytes() - 2 * 2**30:
                    row["skipped"] = f"needs ~{need / 2**30:.1f} GiB"
                else:
                    print(f"{name}: {workers} worker(s), {memory}", flush=True)
                    row.update(measure(data_dir, args.model, memory, workers, ids, args.searches))
                rows.append(row)
                with RESULTS.open("a") as out:
                    out.write(json.dumps({"run": args.run_id, **row}) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
