"""ANN benchmark: Lookalike's flat / HNSW / IVF-PQ indexes and the peers hnswlib and usearch.

Every run measures the exact flat index first on the same data and reports each method
against it (QPS ratio), since the machine's speed varies from run to run. Each method
sweeps its search knob; the row reported is the cheapest setting reaching the recall
target (Recall@100 >= 0.95 by default), the whole sweep goes into the plot.

    PYTHONPATH=src python benchmarks/ann.py --size 100000 --methods hnsw,ivfpq,hnswlib,usearch
    PYTHONPATH=src python benchmarks/ann.py --report    # README tables + ann_recall_qps.png

Data: seeded CLIP-like synthetic vectors (benchmarks/datasets.py), 512-d, cached as .npy
under --cache. Queries are fresh draws, not in the database. Results append to
benchmarks/results/ann.jsonl, one line per (method, knob value).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from synthetic import ClipLike, cached
from tqdm.auto import tqdm

from lookalike.index import FlatIndex, HnswIndex, IndexMeta, IvfPqIndex

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "ann.jsonl"
PLOT = HERE / "ann_recall_qps.png"
K = 100
CHUNK = 50_000  # vectors per add call (progress bar steps)


# --- data ----------------------------------------------------------------------------------
def load_data(size: int, queries: int, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = ClipLike()
    base = cached(cache / f"base-{size}.npy", lambda: data.vectors(size))
    query = cached(cache / f"queries-{queries}.npy", lambda: data.vectors(queries, stream=1))
    truth = cached(
        cache / f"truth-{size}-{queries}.npy",
        lambda: faiss.knn(
            np.ascontiguousarray(query),
            np.ascontiguousarray(base),
            K,
            metric=faiss.METRIC_INNER_PRODUCT,
        )[1],
    )
    return np.ascontiguousarray(base), np.ascontiguousarray(query), np.asarray(truth)


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = sum(len(np.intersect1d(f[:k], t[:k])) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))


def chunks(n: int, label: str) -> Iterator[slice]:
    with tqdm(total=n, desc=label, unit="vec") as bar:
        for start in range(0, n, CHUNK):
            yield slice(start, min(start + CHUNK, n))
            bar.update(min(CHUNK, n - start))


# --- methods -------------------------------------------------------------------------------
class Method:
    name = ""
    knob = ""

    def build(self, base: np.ndarray) -> dict[str, Any]:
        """Build; returns the build parameters."""
        raise NotImplementedError

    def points(self) -> list[Any]:
        return [None]

    def set(self, point: Any) -> None:
        pass

    def search(self, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
        raise NotImplementedError

    def size_bytes(self) -> int:
        raise NotImplementedError


class Ours(Method):
    """Lookalike's own FAISS index classes, as the engine uses them."""

    index: Any

    def search(self, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
        faiss.omp_set_num_threads(threads)
        return self.index.search(queries, k)[1]

    def size_bytes(self) -> int:
        with tempfile.NamedTemporaryFile(suffix=".faiss") as tmp:
            faiss.write_index(self.index._index, tmp.name)
            return os.path.getsize(tmp.name)


class Flat(Ours):
    name = "flat (exact)"

    def build(self, base: np.ndarray) -> dict[str, Any]:
        self.index = FlatIndex(IndexMeta("flat", base.shape[1]), None)
        for part in chunks(len(base), self.name):
            self.index.add(np.arange(part.start, part.stop), base[part])
        return {}


class Hnsw(Ours):
    name = "lookalike hnsw"
    knob = "ef_search"

    def __init__(self, m: int, ef_construction: int) -> None:
        self.params = {"m": m, "ef_construction": ef_construction}

    def build(self, base: np.ndarray) -> dict[str, Any]:
        self.index = HnswIndex(IndexMeta("hnsw", base.shape[1], params=dict(self.params)), None)
        faiss.omp_set_num_threads(2)
        for part in chunks(len(base), self.name):
            self.index.add(np.arange(part.start, part.stop), base[part])
        return self.params

    def points(self) -> list[Any]:
        return [100, 128, 160, 192, 256, 384, 512, 768]

    def set(self, point: Any) -> None:
        self.index.set_search_params(ef_search=point)


class IvfPq(Ours):
    knob = "nprobe"

    def __init__(self, rerank: int) -> None:
        self.rerank = rerank
        self.name = "lookalike ivfpq" + (f" + rerank x{rerank}" if rerank > 1 else "")

    def build(self, base: np.ndarray) -> dict[str, Any]:
        n, dim = base.shape
        params = {"nlist": IvfPqIndex.nlist_for(n), "m": 64, "nbits": 8, "rerank": self.rerank}
        # Stored float vectors by id: in the engine these come from the catalog.
        lookup = (lambda ids: {int(i): base[i] for i in ids}) if self.rerank > 1 else None
        self.index = IvfPqIndex(IndexMeta("ivfpq", dim, params=params), None, vectors=lookup)
        faiss.omp_set_num_threads(2)
        sample = np.random.default_rng(0).choice(n, self.index.training_size(), replace=False)
        started = time.perf_counter()
        self.index.train(base[np.sort(sample)])
        params["train_s"] = round(time.perf_counter() - started, 1)
        for part in chunks(n, self.name):
            self.index.add(np.arange(part.start, part.stop), base[part])
        return params

    def points(self) -> list[Any]:
        return [4, 8, 16, 32, 64, 128, 256]

    def set(self, point: Any) -> None:
        self.index.set_search_params(nprobe=point)


class Hnswlib(Method):
    name = "hnswlib"
    knob = "ef"

    def __init__(self, m: int, ef_construction: int) -> None:
        self.params = {"M": m, "ef_construction": ef_construction}

    def build(self, base: np.ndarray) -> dict[str, Any]:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=base.shape[1])
        self.index.init_index(max_elements=len(base), **self.params)
        for part in chunks(len(base), self.name):
            self.index.add_items(base[part], np.arange(part.start, part.stop), num_threads=2)
        return self.params

    def points(self) -> list[Any]:
        return [100, 128, 160, 192, 256, 384, 512, 768]

    def set(self, point: Any) -> None:
        self.index.set_ef(point)

    def search(self, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
        return self.index.knn_query(queries, k=k, num_threads=threads)[0].astype(np.int64)

    def size_bytes(self) -> int:
        with tempfile.NamedTemporaryFile(suffix=".hnsw") as tmp:
            self.index.save_index(tmp.name)
            return os.path.getsize(tmp.name)


class Usearch(Method):
    name = "usearch"
    knob = "expansion_search"

    def __init__(self, m: int, ef_construction: int) -> None:
        self.params = {"connectivity": m, "expansion_add": ef_construction}

    def build(self, base: np.ndarray) -> dict[str, Any]:
        from usearch.index import Index

        self.index = Index(ndim=base.shape[1], metric="ip", dtype="f32", **self.params)
        for part in chunks(len(base), self.name):
            self.index.add(np.arange(part.start, part.stop), base[part], threads=2)
        return self.params

    def points(self) -> list[Any]:
        return [100, 128, 160, 192, 256, 384, 512, 768]

    def set(self, point: Any) -> None:
        self.index.expansion_search = point

    def search(self, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
        return np.asarray(self.index.search(queries, k, threads=threads).keys, dtype=np.int64)

    def size_bytes(self) -> int:
        return int(self.index.serialized_length)


def make_methods(names: list[str], m: int, ef_construction: int) -> Iterator[Method]:
    """One method at a time, so each one's index is freed before the next is built."""
    known = {
        "hnsw": lambda: Hnsw(m, ef_construction),
        "ivfpq": lambda: IvfPq(rerank=1),
        "ivfpq-rerank": lambda: IvfPq(rerank=4),
        "hnswlib": lambda: Hnswlib(m, ef_construction),
        "usearch": lambda: Usearch(m, ef_construction),
    }
    unknown = set(names) - set(known)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; known: {sorted(known)}")
    return (known[name]() for name in names)


# --- measuring -----------------------------------------------------------------------------
@dataclass
class Row:
    run: str
    size: int
    method: str
    knob: str
    point: Any
    build: dict[str, Any]
    build_s: float
    index_bytes: int
    recall10: float
    recall100: float
    qps1: float
    qps2: float
    p50_ms: float
    p99_ms: float
    flat_qps2: float
    load: tuple[float, float, float]


REPEATS = [2]  # timed runs per batch measurement (--repeats)


def timed_batch(method: Method, queries: np.ndarray, threads: int) -> tuple[float, np.ndarray]:
    """Best of --repeats runs of the whole query batch in one call: queries per second."""
    best, found = 0.0, np.empty(0)
    for _ in range(REPEATS[0]):
        started = time.perf_counter()
        found = method.search(queries, K, threads)
        best = max(best, len(queries) / (time.perf_counter() - started))
    return best, found


def latencies(method: Method, queries: np.ndarray) -> tuple[float, float]:
    """p50 / p99 milliseconds of one query per call (two threads allowed)."""
    times = []
    for query in queries:
        started = time.perf_counter()
        method.search(query[None, :], K, 2)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def measure(
    method: Method,
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    run: str,
    flat_qps2: float,
    latency_queries: int,
    target: float,
) -> list[Row]:
    load = os.getloadavg()
    started = time.perf_counter()
    build = method.build(base)
    build_s = time.perf_counter() - started
    size = method.size_bytes()
    rows = []
    for point in tqdm(method.points(), desc=f"{method.name} sweep"):
        method.set(point)
        qps2, found = timed_batch(method, queries, 2)
        qps1, _ = timed_batch(method, queries, 1)
        p50, p99 = latencies(method, queries[:latency_queries])
        row = Row(
            run,
            len(base),
            method.name,
            method.knob,
            point,
            build,
            round(build_s, 1),
            size,
            recall(found, truth, 10),
            recall(found, truth, K),
            qps1,
            qps2,
            p50,
            p99,
            flat_qps2 or qps2,
            load,
        )
        rows.append(row)
        print(
            f"{method.name:<28} {method.knob}={point!s:<5} R@10 {row.recall10:.3f} "
            f"R@100 {row.recall100:.3f} {qps2:8.0f} q/s (2 thr) {qps1:8.0f} q/s (1 thr) "
            f"p50 {p50:.2f} ms p99 {p99:.2f} ms"
        )
        if method.knob and row.recall100 >= max(target + 0.03, 0.99):
            break  # well past the target: the rest of the sweep only costs time
    return rows


def run(args: argparse.Namespace) -> None:
    run_id = time.strftime("%Y%m%d-%H%M%S")
    base, queries, truth = load_data(args.size, args.queries, args.cache)
    print(
        f"run {run_id}: {args.size} x {base.shape[1]} vectors, {len(queries)} queries, "
        f"{os.cpu_count()} cpus, load {os.getloadavg()}"
    )
    REPEATS[0] = args.repeats
    flat = Flat()
    # Exact search is slow at a million vectors: its baseline may use fewer queries.
    some = slice(0, args.flat_queries or len(queries))
    flat_rows = measure(
        flat, base, queries[some], truth[some], run_id, 0.0, args.latency_queries // 4, args.target
    )
    flat_qps2 = flat_rows[0].qps2
    del flat
    save(flat_rows)
    for method in make_methods(args.methods, args.m, args.ef_construction):
        save(
            measure(
                method,
                base,
                queries,
                truth,
                run_id,
                flat_qps2,
                args.latency_queries,
                args.target,
            )
        )
        del method


def save(rows: list[Row]) -> None:
    """Append as soon as a method is done: a run cut short keeps what it measured."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as out:
        for row in rows:
            out.write(json.dumps({**row.__dict__, "host": platform.node()}) + "\n")
    print(f"appended {len(rows)} rows to {RESULTS}")


# --- report --------------------------------------------------------------------------------
def load_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def operating_point(sweep: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """The cheapest sweep point reaching the target (or the best recall when none does)."""
    good = [r for r in sweep if r["recall100"] >= target]
    return good[0] if good else max(sweep, key=lambda r: r["recall100"])


def report(target: float) -> None:
    """One table per run: every method of a run was measured beside the same flat baseline."""
    rows = load_rows()
    for run_id in sorted({r["run"] for r in rows}):
        in_run = [r for r in rows if r["run"] == run_id]
        methods = list(dict.fromkeys(r["method"] for r in in_run))
        if len(methods) < 2:
            continue
        first = in_run[0]
        print(
            f"\n#### run {run_id}: {first['size']:,} x 512-d, load average "
            f"{first['load'][0]:.1f} at start\n"
        )
        print(
            "| method | knob | R@10 | R@100 | QPS 1 thr | QPS 2 thr | vs flat "
            "| p50 ms | p99 ms | build s | index file MiB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for method in methods:
            r = operating_point([x for x in in_run if x["method"] == method], target)
            knob = f"{r['knob']}={r['point']}" if r["knob"] else "-"
            print(
                f"| {r['method']} | {knob} | {r['recall10']:.3f} | {r['recall100']:.3f} "
                f"| {r['qps1']:,.0f} | {r['qps2']:,.0f} | {r['qps2'] / r['flat_qps2']:.1f}x "
                f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['build_s']:.0f} "
                f"| {r['index_bytes'] / 2**20:,.0f} |"
            )
    plot(rows, target)


def plot(rows: list[dict[str, Any]], target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 4.8), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        latest: dict[str, str] = {}
        for r in rows:
            if r["size"] == size:
                latest[r["method"]] = max(latest.get(r["method"], ""), r["run"])
        for method, run_id in sorted(latest.items()):
            sweep = [
                r for r in rows if (r["size"], r["method"], r["run"]) == (size, method, run_id)
            ]
            ax.plot(
                [r["recall100"] for r in sweep],
                [r["qps2"] for r in sweep],
                "o-",
                label=method,
                markersize=4,
            )
        ax.axvline(target, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("Recall@100")
        ax.set_ylabel("queries/s (2 threads, batch)")
        ax.set_title(f"{size:,} x 512-d CLIP-like vectors")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"\nplot: {PLOT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument(
        "--methods",
        default="hnsw,ivfpq,ivfpq-rerank,hnswlib,usearch",
        type=lambda s: [m for m in s.split(",") if m],
    )
    parser.add_argument("--m", type=int, default=32, help="HNSW links per node (all HNSWs)")
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per batch (best)")
    parser.add_argument("--flat-queries", type=int, default=0, help="queries for the flat baseline")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench"
    )
    parser.add_argument("--report", action="store_true", help="print tables, draw the plot")
    args = parser.parse_args()
    if args.report:
        report(args.target)
    else:
        run(args)


if __name__ == "__main__":
    main()
