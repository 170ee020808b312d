"""FAISS in-process vs Milvus Lite on the same CLIP-like vectors, side by side in one run.

    python benchmarks/milvus_vs_faiss.py                 # 100k x 512, ~10 minutes on 2 cores
    python benchmarks/milvus_vs_faiss.py --n 20000       # a quick look

Data: unit vectors in 512 dimensions with the shape of CLIP image embeddings of a catalog:
a low intrinsic dimension (a 64-dimensional Gaussian mixture of 1,000 clusters, mapped into
512 dimensions) plus a little isotropic noise; queries drawn the same way. Every product
has a category chosen at random so that the filters select 5% and 0.5% of the catalog.

Engines, all on the same vectors:
  faiss-flat     exact search (Lookalike's FlatIndex): the ground truth and the baseline
  faiss-hnsw     FAISS HNSW (M=16, efConstruction=64, efSearch=128), in process
  faiss-ivfpq    FAISS IVF-PQ (1024 lists, 64 one-byte codes a vector, nprobe=32), in process
  milvus-hnsw    Lookalike's MilvusIndex on embedded Milvus Lite, HNSW with the same
                 parameters, filters pushed down as Milvus filter expressions

Filtered queries on the FAISS side take the route Lookalike's FAISS path takes: the
catalog (SQLite) lists the matching vector ids, FAISS searches with an id selector; the
SQL time is included. Milvus evaluates the filter itself.
Reported: build time, bytes per vector (the serialized FAISS index; Milvus Lite's files on
disk), recall@100 against exact (filtered: against exact filtered search), single-query
latency p50/p99 and QPS (queries one after another, as a server answers one request), all
measured in this run.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from lookalike.catalog import Product, ProductFilter, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.index import FlatIndex, IndexMeta, open_index
from lookalike.index.live import rebuild_from_catalog

MODEL = "bench-model"
K = 100
HNSW = {"M": 16, "efConstruction": 64}
EF_SEARCH = 128
FILTERS = {
    "none": None,
    "5%": ProductFilter(categories=("five",)),
    "0.5%": ProductFilter(categories=("half",)),
}


LATENT = 64


def clip_like(n: int, space: tuple[np.ndarray, np.ndarray], rng: np.random.Generator):
    """Unit vectors: a latent Gaussian-mixture point, projected, plus a little noise."""
    centres, projection = space
    latent = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, LATENT))
    vectors = latent.astype(np.float32) @ projection
    vectors += 0.05 * rng.standard_normal(vectors.shape).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def build_catalog(path: Path, vectors: np.ndarray, rng: np.random.Generator) -> SQLiteCatalog:
    draw = rng.random(len(vectors))
    categories = np.where(draw < 0.05, "five", np.where(draw < 0.055, "half", "other"))
    catalog = SQLiteCatalog(path)
    for start in tqdm(range(0, len(vectors), 10_000), desc="catalog", unit="block"):
        catalog.upsert(
            [
                ProductWrite(Product(f"p{i}", category=str(categories[i]), model_id=MODEL), v)
                for i, v in zip(
                    range(start, start + 10_000), vectors[start : start + 10_000], strict=False
                )
            ]
        )
    return catalog


class FaissHnsw:
    """Plain FAISS HNSW over the catalog's vector ids (what an in-process ANN index is)."""

    def __init__(self, dim: int) -> None:
        hnsw = faiss.IndexHNSWFlat(dim, HNSW["M"], faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW["efConstruction"]
        self.index = faiss.IndexIDMap(hnsw)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(vectors, ids)

    def search(self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None):
        selector = None if allowed_ids is None else faiss.IDSelectorBatch(allowed_ids)
        params = faiss.SearchParametersHNSW(efSearch=max(EF_SEARCH, k), sel=selector)
        return self.index.search(query, k, params=params)


class FaissIvfPq:
    """FAISS IVF-PQ: dim / 8 one-byte codes a vector (what IVF_PQ costs in memory)."""

    def __init__(self, dim: int) -> None:
        self.index = faiss.index_factory(dim, f"IVF1024,PQ{dim // 8}", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(self.index))
        # Short trainings keep the run to minutes; recall is what the table reports.
        ivf.cp.niter = 10
        ivf.pq.cp.niter = 5
        ivf.pq.cp.max_points_per_centroid = 40
        ivf.do_polysemous_training = False  # minutes of training, for Hamming filtering unused here

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        sample = vectors[np.random.default_rng(1).permutation(len(vectors))[:40_000]]
        self.index.train(sample)
        self.index.add_with_ids(vectors, ids)

    def search(self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None):
        selector = None if allowed_ids is None else faiss.IDSelectorBatch(allowed_ids)
        params = faiss.SearchParametersIVF(nprobe=32, sel=selector)
        return self.index.search(query, k, params=params)


def milvus_settings(root: Path) -> Settings:
    """Embedded Milvus Lite under `root`, HNSW with the parameters FAISS gets."""
    return Settings(
        _env_file=None,
        data_dir=root / "data",
        index_url=str(root / "milvus.db"),
        milvus_index_type="HNSW",
        milvus_index_params=HNSW,
        milvus_search_params={"ef": EF_SEARCH},
        milvus_write_batch=5_000,
    )


def faiss_bytes(index: faiss.Index) -> int:
    return len(faiss.serialize_index(index))


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(label: str, work: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f} s", flush=True)
    return result, seconds


def run_queries(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray):
    """(ids per query, latencies in ms): one query at a time."""
    found, latencies = [], []
    for query in queries:
        started = time.perf_counter()
        ids = search(query.reshape(1, -1))
        latencies.append((time.perf_counter() - started) * 1000)
        found.append(ids)
    return np.vstack(found), np.asarray(latencies)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [
        len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum())
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="catalog vectors")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads (per-core figures)")
    args = parser.parse_args()
    # One thread: per-core figures for capacity planning, and no OpenMP spinning on a
    # shared machine (Milvus Lite runs FAISS in this process too).
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    space = (
        rng.standard_normal((1_000, LATENT)),
        (rng.standard_normal((LATENT, args.dim)) / np.sqrt(LATENT)).astype(np.float32),
    )
    vectors = clip_like(args.n, space, rng)
    queries = clip_like(args.queries, space, rng)
    print(
        f"{args.n} vectors x {args.dim} dims, {args.queries} queries, top {K}; "
        f"{platform.processor() or platform.machine()}, faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as tmp:
        root = Path(tmp)
        catalog, _ = timed("catalog (SQLite)", lambda: build_catalog(root / "c.db", vectors, rng))
        ids = np.arange(1, args.n + 1, dtype=np.int64)  # vector ids follow insertion order
        assert catalog.get("p0").vector_id == 1

        print("building", flush=True)
        flat, flat_s = timed(
            "faiss-flat",
            lambda: rebuild_from_catalog(
                FlatIndex(IndexMeta("flat", args.dim, MODEL), None), catalog
            ),
        )
        hnsw = FaissHnsw(args.dim)
        _, hnsw_s = timed("faiss-hnsw", lambda: hnsw.add(ids, vectors))
        ivfpq = FaissIvfPq(args.dim)
        _, ivfpq_s = timed("faiss-ivfpq (train + add)", lambda: ivfpq.add(ids, vectors))
        live, milvus_s = timed(
            "milvus-hnsw (insert + flush)",
            lambda: open_index(milvus_settings(root), catalog, args.dim, MODEL, progress=True),
        )
        milvus = live.index

        allowed = {name: f and catalog.filter_vector_ids(f) for name, f in FILTERS.items()}
        engines: dict[str, Callable[[np.ndarray, ProductFilter | None], np.ndarray]] = {
            "faiss-flat": lambda q, f: flat.search(
                q, K, allowed_ids=None if f is None else catalog.filter_vector_ids(f)
            )[1],
            "faiss-hnsw": lambda q, f: hnsw.search(
                q, K, None if f is None else catalog.filter_vector_ids(f)
            )[1],
            "faiss-ivfpq": lambda q, f: ivfpq.search(
                q, K, None if f is None else catalog.filter_vector_ids(f)
            )[1],
            "milvus-hnsw": lambda q, f: (
                milvus.search(q, K)[1] if f is None else milvus.search_filtered(q, K, f)[1]
            ),
        }
        build = {
            "faiss-flat": flat_s,
            "faiss-hnsw": hnsw_s,
            "faiss-ivfpq": ivfpq_s,
            "milvus-hnsw": milvus_s,
        }
        size = {
            "faiss-flat": faiss_bytes(flat._index),
            "faiss-hnsw": faiss_bytes(hnsw.index),
            "faiss-ivfpq": faiss_bytes(ivfpq.index),
            "milvus-hnsw": disk_bytes(root / "milvus.db"),
        }

        rows = []
        for filter_name, product_filter in FILTERS.items():
            truth = flat.search(queries, K, allowed_ids=allowed[filter_name])[1]
            for engine, search in engines.items():
                found, latencies = run_queries(
                    lambda q, s=search, f=product_filter: s(q, f), queries
                )
                rows.append(
                    (
                        engine,
                        filter_name,
                        recall(found, truth),
                        len(queries) / (latencies.sum() / 1000),
                        np.percentile(latencies, 50),
                        np.percentile(latencies, 99),
                        build[engine],
                        size[engine] / args.n,
                    )
                )
                print(f"  {engine} / {filter_name}: done", flush=True)
        catalog.close()

    print()
    print("| engine | filter | recall@100 | QPS | p50 ms | p99 ms | build s | bytes/vector |")
    print("|---|---|---|---|---|---|---|---|")
    for engine, name, rec, qps, p50, p99, seconds, per_vector in rows:
        print(
            f"| {engine} | {name} | {rec:.3f} | {qps:.1f} | {p50:.1f} | {p99:.1f} | "
            f"{seconds:.0f} | {per_vector:.0f} |"
        )


if __name__ == "__main__":
    main()
